"""The App Home tab: what Fido is doing now — open incidents, recent actions."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

from bot.slack.text import escape, slack_date, truncate, who
from pipeline.controls import Switches
from pipeline.models import Action, Incident

SEVERITY_EMOJI = {
    "critical": "🔴",
    "high": "🟠",
    "medium": "🟡",
    "low": "🔵",
    "informational": "⚪",
}


def _switches(switches: Switches | None) -> list[Block]:
    """Whether automatic action is paused, and which responders went past their cap."""
    if switches is None or not (switches.paused or switches.tripped):
        return []
    lines = []
    if switches.paused:
        lines.append(
            f":double_vertical_bar: *Automatic action is paused* by {who(switches.paused_by)}"
            + (f" since {slack_date(switches.paused_at)}" if switches.paused_at else "")
            + " · `/fido resume` lifts it"
        )
    for responder in sorted(switches.tripped):
        lines.append(
            f":rotating_light: *{escape(responder)}* reached its hourly cap and asks first"
            f" · `/fido resume {escape(responder)}` resets it"
        )
    return [SectionBlock(text=MarkdownTextObject(text="\n".join(lines)))]


def home_view(
    incidents: Sequence[Incident],
    actions: Sequence[Action],
    *,
    pending_events: int,
    switches: Switches | None = None,
) -> dict[str, object]:
    """The ``views.publish`` view: whether automatic action is paused, up to 15 open
    incidents and the last 10 actions."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="Fido")),
        *_switches(switches),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"{len(incidents)} open incidents shown · "
                    f"{pending_events} alerts in the queue"
                )
            ]
        ),
        DividerBlock(),
    ]
    if not incidents:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No open incidents. :dog:")))
    for incident in incidents[:15]:
        emoji = SEVERITY_EMOJI.get(incident.severity, "•")
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=truncate(
                        f"{emoji} *#{incident.id}* {escape(truncate(incident.title, 200))}\n"
                        f"{incident.score}/100 · {escape(incident.decision or 'undecided')} · "
                        f"{incident.event_count} events · {slack_date(incident.updated_at)}",
                        3000,
                    )
                )
            )
        )
    if actions:
        blocks.append(DividerBlock())
        lines = [
            f"• #{a.incident_id} {escape(a.responder)} `{escape(a.target)}`: {escape(a.status)}"
            f" · {slack_date(a.updated_at)}"
            for a in actions[:10]
        ]
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=truncate("*Recent actions*\n" + "\n".join(lines), 3000)
                )
            )
        )
    return {"type": "home", "blocks": [b.to_dict() for b in blocks]}
