"""The messages beside the card, as pure functions of the pipeline's records
(``pipeline/routing.py``): a thread reply about new events, the digest of low-score
incidents, the "was this you?" direct message with its two buttons, and the notes of the
approval SLA and of a user's answer. Every value from an alert is escaped for mrkdwn.

The answer buttons' ids and value live here with the message that carries them: one kind,
``fido_ask``, told apart by ``yes`` / ``no``, carrying an :class:`AskValue`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from slack_sdk.models.blocks import ActionsBlock, Block

from bot.slack import elements as el
from bot.slack.ids import ValueModel
from bot.slack.text import code, escape, one_line, truncate
from pipeline.models import Incident, UserAnswer
from pipeline.routing import AskDM, Digest, Note, ThreadNews

TITLE_MAX = 150
EMOJI = {"informational": "ℹ️", "low": "🔵", "medium": "🟡", "high": "🟠", "critical": "🔴"}


class AskId(StrEnum):
    ANSWER = "fido_ask"


ASK_PATTERN = re.compile(rf"\A{AskId.ANSWER.value}(?::.*)?\Z")


class AskValue(ValueModel):
    """What a Yes / No button of the direct message carries."""

    check_id: int
    answer: Literal["yes", "no"]


def _title(text: str) -> str:
    return escape(truncate(one_line(text), TITLE_MAX))


def _minutes(minutes: float | None) -> str:
    if minutes is None:
        return "a while"
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def _group(group: str | None) -> str:
    return f"<!subteam^{group}> " if group and re.fullmatch(r"S[A-Z0-9]+", group) else ""


def thread_news_text(news: ThreadNews) -> str:
    """One short reply: how many events since the last one, from which detectors."""
    plural = "s" if news.new_events != 1 else ""
    detectors = ", ".join(
        f"{code(name)} ×{count}" for name, count in sorted(news.by_detector.items())
    )
    titles = "; ".join(_title(t) for t in news.titles)
    return (
        f"➕ {news.new_events} new event{plural} ({news.total_events} in all) · {detectors}"
        f" · score {news.score}/100" + (f"\n{titles}" if titles else "")
    )


def digest_message(digest: Digest) -> tuple[str, list[Block]]:
    count = len(digest.items)
    text = f"Digest: {count} low-score incident{'s' if count != 1 else ''}"
    lines = [f"*{text}*"]
    for item in digest.items:
        lines.append(
            f"• {EMOJI.get(item.severity, '⚪')} #{item.incident_id} {_title(item.title)}"
            f" · {item.score}/100 · {item.events} event{'s' if item.events != 1 else ''}"
            f" · {', '.join(code(d) for d in item.detectors)}"
        )
    if digest.more:
        lines.append(f"_{digest.more} more in the next message_")
    lines.append("_`/fido incident N` shows one in full_")
    return text, [el.section("\n".join(lines))]


def ask_message(dm: AskDM) -> tuple[str, list[Block]]:
    """The question, with what Fido saw and the two answers."""
    text = "Fido security check: was this you?"
    seen = []
    for kind in ("ips", "hosts"):
        values = dm.observables.get(kind) or []
        if values:
            seen.append(f"*{kind[:-1].upper() if kind == 'ips' else 'Host'}:* "
                        + ", ".join(code(v) for v in values[:5]))  # fmt: skip
    body = (
        f"👋 Hello — the security team's assistant here. We saw this for your account "
        f"{code(dm.account)}:\n*{_title(dm.title)}*"
        + ("\n" + "\n".join(seen) if seen else "")
        + "\nWas this you? Your answer goes straight to the security team."
    )
    yes = AskValue(check_id=dm.check_id, answer="yes")
    no = AskValue(check_id=dm.check_id, answer="no")
    buttons = ActionsBlock(
        elements=[
            el.button(AskId.ANSWER, "Yes, this was me", yes, "yes", style="primary"),  # type: ignore[arg-type]
            el.button(AskId.ANSWER, "No, this wasn't me", no, "no", style="danger"),  # type: ignore[arg-type]
        ]
    )
    return text, [el.section(body), buttons]


def answered_message(status: str) -> tuple[str, list[Block]]:
    """The direct message once answered (it replaces the buttons)."""
    if status == UserAnswer.no.value:
        text = "Thank you. You said this wasn't you: the security team has been alerted."
    else:
        text = "Thank you. You confirmed this was you; the security team can see it."
    return text, [el.section(text)]


def note_text(note: Note, incident: Incident | None) -> str:
    ref = f"incident #{note.incident_id}"
    if incident is not None:
        ref += f" ({_title(incident.title)})"
        if note.channel and incident.message_channel and note.channel != incident.message_channel:
            ref += f" in <#{incident.message_channel}>"
    if note.what == "reminder":
        return (
            f"⏰ {_group(note.group)}{ref} has waited {_minutes(note.minutes)} for approval: "
            "Approve or Deny on the card."
        )
    if note.what == "escalation":
        return (
            f"🚨 Escalation: {_group(note.group)}{ref} has waited {_minutes(note.minutes)} "
            "for approval and nobody has decided."
        )
    if note.what == "timeout":
        lines = [f"⏱️ No decision on {ref} within {_minutes(note.minutes)}: the policy's default"]
        lines += [f"• {escape(truncate(o, 300))}" for o in note.outcomes]
        return "\n".join(lines)
    who = code(note.account or "the user")
    if note.answer == UserAnswer.no.value:
        return f"🚨 *{who} says this was NOT them* — {ref}. The score has been raised."
    return f"🙋 {who} answered {escape(note.answer or '')} — {ref}."
