"""The incident card: pure functions from an Incident and its Actions to Block Kit blocks.

Everything that comes from an alert or a directory is escaped for mrkdwn (see
``bot.slack.text``), so an alert cannot mention ``@channel`` or plant a link; every text is
cut to Slack's limits, and the card never exceeds 50 blocks.

Buttons: while the decision is ``ask_approval``, each proposed action without an Action row
gets an Approve button (style danger, with a confirm dialog) and a Deny button, both
carrying the same :class:`~bot.slack.ids.ButtonValue`; each succeeded action that can be
undone gets an Undo button whose value names the Action row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.slack.facts import fact_sections
from bot.slack.ids import ActionId, ButtonValue, action_id_for
from bot.slack.text import (
    BUTTON_MAX,
    CONFIRM_TEXT_MAX,
    CONTEXT_MAX,
    FIELD_MAX,
    HEADER_MAX,
    MAX_BLOCKS,
    SECTION_MAX,
    VALUE_MAX,
    code,
    escape,
    one_line,
    render_text,
    slack_date,
    truncate,
    who,
)
from pipeline.models import Action, ActionStatus, Decision, Incident

__all__ = ["card_text", "incident_card", "render_text"]

TARGET_MAX = 255  # Action.target's column size: longer proposals cannot be acted on
MAX_ACTIONS, MAX_PROPOSALS, MAX_PER_KIND = 10, 10, 10
# Worst case: 5 top + 6 facts + 2 decision + 21 actions + 11 proposals = 45 ≤ MAX_BLOCKS.

SEVERITY_EMOJI: dict[str, str] = {
    "informational": "ℹ️", "low": "🔵", "medium": "🟡", "high": "🟠", "critical": "🔴",
}  # fmt: skip
STATUS_EMOJI: dict[str, str] = {
    ActionStatus.running: "⏳", ActionStatus.succeeded: "✅", ActionStatus.failed: "❌",
    ActionStatus.denied: "🚫", ActionStatus.dry_run: "🧪", ActionStatus.undoing: "⏳",
    ActionStatus.undone: "↩️",
}  # fmt: skip
DECISION_TEXT: dict[str, str] = {
    Decision.record: "Recorded only",
    Decision.notify: "Notify only",
    Decision.ask_approval: "Approval needed",
    Decision.auto_act: "Acting automatically",
}
OBSERVABLE_KINDS = (
    ("users", "Users"), ("hosts", "Hosts"), ("ips", "IPs"),
    ("hashes", "Hashes"), ("domains", "Domains"), ("urls", "URLs"),
)  # fmt: skip


def _section(text: str, fields: Sequence[str] = ()) -> SectionBlock:
    return SectionBlock(
        text=MarkdownTextObject(text=truncate(text, SECTION_MAX)),
        fields=[MarkdownTextObject(text=truncate(f, FIELD_MAX)) for f in fields[:10]] or None,
    )


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=truncate(text, CONTEXT_MAX))])


def _label(labels: Mapping[str, str], responder: str) -> str:
    return labels.get(responder) or f"run {responder} on"


def _fact_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        shown = ", ".join(escape(truncate(str(v), 60)) for v in value[:5])
        return shown + (f" +{len(value) - 5} more" if len(value) > 5 else "")
    return escape(truncate(str(value), VALUE_MAX))


def _header(incident: Incident) -> HeaderBlock:
    emoji = SEVERITY_EMOJI.get(incident.severity, "⚪")
    text = f"{emoji} {incident.severity.upper()} · {one_line(incident.title)}"
    return HeaderBlock(text=PlainTextObject(text=truncate(text, HEADER_MAX), emoji=True))


def _summary(incident: Incident) -> ContextBlock:
    events = f"{incident.event_count} event{'' if incident.event_count == 1 else 's'}"
    created = f" · {slack_date(incident.created_at)}" if incident.created_at else ""
    return _context(f"Incident #{incident.id} · {events}{created}")


def _score(incident: Incident) -> SectionBlock:
    lines = [f"*Score: {incident.score}/100*"]
    for item in incident.score_breakdown[:30]:
        reason = escape(truncate(str(item.get("reason", "")), VALUE_MAX))
        lines.append(f"• {int(item.get('points', 0)):+d} {reason}")
    return _section("\n".join(lines))


def _degraded(incident: Incident) -> ContextBlock | None:
    if not incident.degraded:
        return None
    failed = []
    for name, result in incident.enrichment.items():
        if isinstance(result, dict) and result.get("status") != "ok":
            why = escape(result.get("status") or "error")
            if result.get("error"):
                why += f": {escape(truncate(str(result['error']), VALUE_MAX))}"
            failed.append(f"{escape(name)} ({why})")
    named = ": " + ", ".join(failed) if failed else ""
    return _context(f"⚠️ *Enrichment incomplete*{named}. Fido asks rather than acts.")


def _observables(incident: Incident) -> SectionBlock | None:
    lines = []
    for kind, title in OBSERVABLE_KINDS:
        values = incident.observables.get(kind) or []
        if values:
            shown = ", ".join(code(v) for v in values[:MAX_PER_KIND])
            more = f" +{len(values) - MAX_PER_KIND} more" if len(values) > MAX_PER_KIND else ""
            lines.append(f"*{title}:* {shown}{more}")
    return _section("*Observables*\n" + "\n".join(lines)) if lines else None


def _decision(incident: Incident) -> SectionBlock | None:
    if not incident.decision:
        return None
    text = f"*Decision:* {DECISION_TEXT.get(incident.decision, escape(incident.decision))}"
    if incident.decision_reason:
        text += f" — {escape(truncate(incident.decision_reason, 1000))}"
    return _section(text)


def _button(
    kind: ActionId, text: str, value: ButtonValue, discriminator: str, **kw: Any
) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=truncate(one_line(text), BUTTON_MAX), emoji=True),
        action_id=action_id_for(kind, discriminator),
        value=value.dump(),
        **kw,
    )


def _confirm(title: str, text: str, yes: str) -> ConfirmObject:
    return ConfirmObject(
        title=PlainTextObject(text=title),
        text=PlainTextObject(text=truncate(one_line(text), CONFIRM_TEXT_MAX)),
        confirm=PlainTextObject(text=yes),
        deny=PlainTextObject(text="Cancel"),
        style="danger",
    )


def _action_line(action: Action, label: str) -> str:
    status = action.status
    line = f"{STATUS_EMOJI.get(status, '•')} *{escape(label)}* {code(action.target)}"
    if status == ActionStatus.denied:
        line += f" · *Denied* by {who(action.approved_by or action.requested_by)}"
    else:
        line += f" · *{escape(status)}*"
        if action.approved_by:
            line += f" · approved by {who(action.approved_by)}"
        if action.requested_by.lower() == "fido" and not action.approved_by:
            line += " · automatic (Fido)"
        elif action.requested_by != action.approved_by:
            line += f" · requested by {who(action.requested_by)}"
        if status == ActionStatus.undone:
            line += f" · undone by {who(action.undone_by)}"
    line += f" · {slack_date(action.updated_at or action.created_at)}"
    if action.result:
        line += f"\n{escape(truncate(action.result, 1000))}"
    return line


def _actions(
    incident_id: int,
    actions: Sequence[Action],
    labels: Mapping[str, str],
    can_undo: Callable[[Action], bool],
) -> list[Block]:
    ordered = sorted(actions, key=lambda a: (a.created_at, a.id or 0))
    blocks: list[Block] = []
    if len(ordered) > MAX_ACTIONS:
        blocks.append(_context(f"_{len(ordered) - MAX_ACTIONS} earlier actions not shown_"))
    for action in ordered[-MAX_ACTIONS:]:
        label = _label(labels, action.responder)
        blocks.append(_context(_action_line(action, label)))
        if action.status == ActionStatus.succeeded and action.id is not None and can_undo(action):
            value = ButtonValue(
                incident_id=incident_id,
                responder=action.responder,
                target=action.target,
                action_id=action.id,
            )
            what = f"{label} {action.target}"
            confirm = _confirm("Undo this action?", f"Fido will undo: {what}.", "Undo")
            undo = _button(ActionId.UNDO, f"Undo: {what}", value, str(action.id), confirm=confirm)
            blocks.append(ActionsBlock(elements=[undo]))
    return blocks


def _proposals(
    incident: Incident, incident_id: int, actions: Sequence[Action], labels: Mapping[str, str]
) -> list[Block]:
    if incident.decision != Decision.ask_approval:
        return []
    taken = {(a.responder, a.target) for a in actions}
    proposed = [
        (str(p["responder"]), str(p["target"]))
        for p in incident.proposed_actions
        if isinstance(p, dict) and "responder" in p and "target" in p
    ]
    pending = [p for p in dict.fromkeys(proposed) if p not in taken]
    blocks: list[Block] = []
    for responder, target in pending[:MAX_PROPOSALS]:
        label, key = _label(labels, responder), f"{responder}:{target}"
        if len(target) > TARGET_MAX:
            blocks.append(_context(f"⚠️ cannot act on a {len(target)}-character target"))
            continue
        value = ButtonValue(incident_id=incident_id, responder=responder, target=target)
        what = f"{label} {target}"
        confirm = _confirm(
            "Approve containment?", f"Fido will {what} now (incident #{incident_id}).", "Approve"
        )
        approve = _button(
            ActionId.APPROVE, f"Approve: {what}", value, key, style="danger", confirm=confirm
        )
        blocks.append(ActionsBlock(elements=[approve, _button(ActionId.DENY, "Deny", value, key)]))
    if len(pending) > MAX_PROPOSALS:
        more = len(pending) - MAX_PROPOSALS
        blocks.append(_context(f"_{more} more proposals: see `/fido incident {incident_id}`_"))
    return blocks


def incident_card(
    incident: Incident,
    actions: Sequence[Action],
    *,
    labels: Mapping[str, str] | None = None,
    can_undo: Callable[[Action], bool] | None = None,
) -> list[Block]:
    """The blocks of an incident's Slack message (no buttons while it has no id).

    ``labels`` maps a responder name to its button verb (``{"ad_disable_account":
    "disable"}``). ``can_undo`` says whether a succeeded action offers Undo; by default,
    when the responder left ``undo_data``.
    """
    labels = labels or {}
    can_undo = can_undo or (lambda action: bool(action.undo_data))
    blocks: list[Block | None] = [
        _header(incident),
        _summary(incident),
        _score(incident),
        _degraded(incident),
        _observables(incident),
        *fact_sections(incident.enrichment),
        DividerBlock(),
        _decision(incident),
    ]
    if incident.id is not None:
        blocks += _actions(incident.id, actions, labels, can_undo)
        blocks += _proposals(incident, incident.id, actions, labels)
    return [b for b in blocks if b is not None][:MAX_BLOCKS]


def card_text(incident: Incident) -> str:
    """The notification (fallback) text; Slack reads it as mrkdwn, so the title is escaped."""
    title = escape(truncate(one_line(incident.title), 500))
    return f"[{incident.severity.upper()}] {incident.score}/100 Incident #{incident.id}: {title}"
