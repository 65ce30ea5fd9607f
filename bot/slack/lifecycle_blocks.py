"""The incident card's lifecycle part: the close buttons of an open incident, the line that
says how a closed one ended, the offer to suppress alerts like a false positive's, and the
mark of an incident its suppression silenced. Pure functions, like the rest of the card."""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, Block, ContextBlock

from bot.slack import elements as el
from bot.slack.ids import ActionId, IncidentValue
from bot.slack.suppression_blocks import match_fields
from bot.slack.text import code, escape, one_line, slack_date, truncate, who
from pipeline.models import CloseVerdict, Decision, Incident
from pipeline.suppress import from_incident

VERDICT_TEXT: dict[str, str] = {
    CloseVerdict.true_positive: "true positive",
    CloseVerdict.false_positive: "false positive",
    CloseVerdict.benign: "benign",
}
VERDICT_EMOJI: dict[str, str] = {
    CloseVerdict.true_positive: "✅", CloseVerdict.false_positive: "🙅",
    CloseVerdict.benign: "🆗",
}  # fmt: skip
# (verdict, button label, what the confirm dialog says the verdict means)
CLOSE_BUTTONS = (
    (CloseVerdict.true_positive, "✅ Resolve (true positive)", "it was real and is handled"),
    (CloseVerdict.false_positive, "🙅 False positive", "the detector was wrong"),
    (CloseVerdict.benign, "Benign", "real activity, but expected or harmless"),
)


def suppressed(incident: Incident) -> ContextBlock | None:
    if not incident.suppressed_by:
        return None
    return el.context(f"🔕 Suppressed by {code(incident.suppressed_by)}: its alerts post nothing")


def close_buttons(incident: Incident, incident_id: int) -> ActionsBlock | None:
    """Resolve / False positive / Benign, each with a confirm dialog (an open incident that
    was posted: not one only recorded)."""
    if incident.decision in (None, Decision.record):
        return None
    elements = []
    for verdict, text, meaning in CLOSE_BUTTONS:
        what = VERDICT_TEXT[verdict]
        confirm = el.confirm(
            f"Close as {what}?",
            f"Incident #{incident_id} will be closed as {what}: {meaning}. "
            "Later alerts about it open a new incident.",
            "Close",
            style="primary",
        )
        value = IncidentValue(incident_id=incident_id, verdict=verdict)
        elements.append(el.button(ActionId.CLOSE, text, value, verdict.value, confirm=confirm))
    return ActionsBlock(elements=elements)


def closed(incident: Incident) -> ContextBlock:
    """``🙅 Closed as false positive by @ann · date · reason``."""
    verdict = incident.verdict or ""
    line = f"{VERDICT_EMOJI.get(verdict, '🔒')} Closed"
    if verdict:
        line += f" as {VERDICT_TEXT.get(verdict) or escape(verdict)}"
    line += f" by {who(incident.closed_by)}"
    if incident.closed_at:
        line += f" · {slack_date(incident.closed_at)}"
    if incident.close_reason:
        line += f" · {escape(truncate(one_line(incident.close_reason), 1000))}"
    return el.context(line)


def suppress_offer(
    incident: Incident, incident_id: int, *, days: int, suppression: str | None
) -> Block | None:
    """After a false-positive close: the suppression made from it, or a button to make one
    (not for an incident a suppression already silenced)."""
    if incident.verdict != CloseVerdict.false_positive or incident.suppressed_by:
        return None
    if suppression:
        return el.context(f"🔕 Alerts like this are suppressed by {code(suppression)}")
    like = match_fields(from_incident(incident))
    like["title"] = one_line(incident.title)  # as written, not as the glob it becomes
    what = ", ".join(f"{field} {value}" for field, value in like.items())
    confirm = el.confirm(
        "Suppress similar alerts?",
        f"Alerts like incident #{incident_id}'s ({what}) will post nothing and trigger "
        f"nothing for {days} days. You will be named its owner.",
        "Suppress",
    )
    value = IncidentValue(incident_id=incident_id, days=days)
    text = f"🔕 Suppress similar alerts ({days} days)"
    button = el.button(ActionId.SUPPRESS, text, value, str(incident_id), confirm=confirm)
    return ActionsBlock(elements=[button])
