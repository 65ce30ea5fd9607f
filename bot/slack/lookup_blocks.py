"""The answer to ``/fido lookup``: every enricher's facts and Fido's history, as blocks."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

from bot.slack.text import code, escape, truncate
from pipeline.investigate import Report
from pipeline.observables import Observables
from pipeline.records import EnrichmentResult, FactState, fact_state

SECTION_MAX = 3000
MAX_BLOCKS = 50


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        shown = ", ".join(escape(v) for v in value[:8])
        return shown + (f" (+{len(value) - 8} more)" if len(value) > 8 else "")
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return f"<{escape(value)}|link>"
    return escape(value)


def _facts(name: str, result: EnrichmentResult, key: str) -> str:
    if not result.ok:
        why = f"{result.status.value} — {result.error or 'no detail'}"
        return f"*{escape(name)}*: :warning: {escape(why)}"
    facts = result.facts.get(key)
    if not facts:
        return f"*{escape(name)}*: nothing known"
    if fact_state(facts) is FactState.not_found:
        return f"*{escape(name)}*: not found"
    lines = [f"*{escape(name)}*"]
    for field, value in facts.items():
        if field == "found":
            continue
        lines.append(f"  • {escape(field.replace('_', ' '))}: {_value(value)}")
    return "\n".join(lines)


def lookup_blocks(report: Report) -> list[Block]:
    key = Observables.key(report.kind, report.value)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=truncate(f"{report.kind}: {report.value}", 150)))
    ]
    if not report.results:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="_no enrichers enabled_")]))
    for name, result in report.results.items():
        text = truncate(_facts(name, result, key), SECTION_MAX)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=text)))
    if report.history:
        lines = ["*Fido's history (90 days)*"]
        for item in report.history:
            outcome = "; ".join(item["actions"]) or item["decision"] or "no decision"
            lines.append(
                f"• #{item['id']} {escape(item['severity'])} {item['score']}/100 "
                f"{escape(truncate(item['title'], 120))} — {escape(outcome)} "
                f"({item['created_at'][:10]})"
            )
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=truncate("\n".join(lines), SECTION_MAX)))
        )
    else:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"No incident about {code(report.value)} in the last 90 days"
                    )
                ]
            )
        )
    return blocks[:MAX_BLOCKS]
