"""The incident card: pure functions from an Incident and its Actions to Block Kit blocks.

Everything that comes from an alert or a directory is escaped for mrkdwn (see
``bot.slack.text``), so an alert cannot mention ``@channel`` or plant a link; every text is
cut to Slack's limits, and the card never exceeds 50 blocks.

Buttons: while the incident is open and asks for approval (or acts automatically and
holds some proposals back), each proposed action that does not run by itself and has no
Action row gets an Approve button (style danger, with a confirm dialog) and
a Deny button, both carrying the same :class:`~bot.slack.ids.ButtonValue`; each succeeded
action of a responder that declares itself reversible gets an Undo button whose value names
the Action row. An open,
posted incident offers three close buttons (true positive, false positive, benign); once
closed, the card says by whom and why, and a false positive offers to suppress similar
alerts (an :class:`~bot.slack.ids.IncidentValue` each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    PlainTextObject,
    SectionBlock,
)

from bot.slack import elements as el
from bot.slack import lifecycle_blocks as lifecycle
from bot.slack.facts import fact_sections
from bot.slack.ids import ActionId, ButtonValue
from bot.slack.text import (
    HEADER_MAX,
    MAX_BLOCKS,
    VALUE_MAX,
    code,
    escape,
    one_line,
    render_text,
    slack_date,
    truncate,
    who,
)
from pipeline.enrich import facts_for
from pipeline.models import (
    Action,
    ActionStatus,
    Decision,
    Event,
    Incident,
    IncidentStatus,
    UserAnswer,
)
from pipeline.records import ScoreLine, breakdown_of, enrichment_of, proposals_of, top_reasons

__all__ = ["card_text", "incident_card", "render_text"]

# (responder, target, the directory's facts about it) → the confirm dialog's text
Planner = Callable[[str, str, Mapping[str, Any]], str]
TARGET_MAX = 255  # Action.target's column size: longer proposals cannot be acted on
MAX_ACTIONS, MAX_PROPOSALS, MAX_PER_KIND = 10, 10, 10
TOP_REASONS = 5  # score lines on the card; /fido incident N shows them all
MAX_SCORE_LINES = 40  # the full breakdown (a section holds 3000 characters)
MAX_EVENTS = 10  # timeline lines
# Worst case, open: 5 top (header, summary, score, degraded, observables) + 1 suppressed
# + 1 timeline + 6 facts + 2 (divider, decision) + 21 actions (10 × line and Undo, 1 "earlier")
# + 11 proposals + 1 close buttons + 1 answers/SLA line = 49 ≤ MAX_BLOCKS. Closed: no
# proposals or close buttons, but a closed line and the suppress offer, never made beside
# the suppressed mark: 5 + 1 timeline + 6 + 2 + 1 answers + 1 closed + 21 + 1 offer = 38.

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
    ("observers", "Seen by"),
)  # fmt: skip


def _label(labels: Mapping[str, str], responder: str) -> str:
    return labels.get(responder) or f"run {responder} on"


def _header(incident: Incident) -> HeaderBlock:
    emoji = SEVERITY_EMOJI.get(incident.severity, "⚪")
    text = f"{emoji} {incident.severity.upper()} · {one_line(incident.title)}"
    return HeaderBlock(text=PlainTextObject(text=truncate(text, HEADER_MAX), emoji=True))


def _summary(incident: Incident) -> ContextBlock:
    events = f"{incident.event_count} event{'' if incident.event_count == 1 else 's'}"
    follows = f" · follows #{incident.previous_id}" if incident.previous_id else ""
    created = f" · {slack_date(incident.created_at)}" if incident.created_at else ""
    return el.context(f"Incident #{incident.id}{follows} · {events}{created}")


def _reason_line(line: ScoreLine) -> str:
    return f"• {line.points:+d} {escape(truncate(line.reason, VALUE_MAX))}"


def _by_component(lines: Sequence[ScoreLine]) -> list[str]:
    """Every line under its component's heading and subtotal, components in order of use."""
    text: list[str] = []
    for component in dict.fromkeys(line.component for line in lines):
        mine = [line for line in lines if line.component == component]
        text.append(f"*{component.value.capitalize()}* {sum(li.points for li in mine):+d}")
        text += [_reason_line(line) for line in mine]
    return text


def _score(incident: Incident, *, full: bool) -> SectionBlock:
    """The score with its top reasons (the card) or every line by component
    (``/fido incident N``)."""
    lines = breakdown_of(incident.score_breakdown)
    shown = lines[:MAX_SCORE_LINES] if full else top_reasons(lines, TOP_REASONS)
    text = [f"*Score: {incident.score}/100*" + (" · every point" if full else " · top reasons")]
    text += _by_component(shown) if full else [_reason_line(line) for line in shown]
    hidden = len(lines) - len(shown)
    if hidden > 0:
        text.append(f"_{hidden} more: `/fido incident {incident.id}` shows every point_")
    return el.section("\n".join(text))


def _degraded(incident: Incident) -> ContextBlock | None:
    if not incident.degraded:
        return None
    failed = []
    for name, result in enrichment_of(incident.enrichment).items():
        if not result.ok:
            why = escape(result.status.value)
            if result.error:
                why += f": {escape(truncate(result.error, VALUE_MAX))}"
            failed.append(f"{escape(name)} ({why})")
    named = ": " + ", ".join(failed) if failed else ""
    return el.context(f"⚠️ *Enrichment incomplete*{named}. Fido asks rather than acts.")


def _observables(incident: Incident) -> SectionBlock | None:
    lines = []
    for kind, title in OBSERVABLE_KINDS:
        values = incident.observables.get(kind) or []
        if values:
            shown = ", ".join(code(v) for v in values[:MAX_PER_KIND])
            more = f" +{len(values) - MAX_PER_KIND} more" if len(values) > MAX_PER_KIND else ""
            lines.append(f"*{title}:* {shown}{more}")
    return el.section("*Observables*\n" + "\n".join(lines)) if lines else None


def _decision(incident: Incident) -> SectionBlock | None:
    if not incident.decision:
        return None
    text = f"*Decision:* {DECISION_TEXT.get(incident.decision, escape(incident.decision))}"
    if incident.decision_reason:
        text += f" — {escape(truncate(incident.decision_reason, 1000))}"
    return el.section(text)


ANSWER_TEXT: dict[str, str] = {
    UserAnswer.asking: "⏳ being asked", UserAnswer.asked: "⏳ asked, no answer yet",
    UserAnswer.yes: "🙋 *Yes, this was me*", UserAnswer.no: "🚨 *No, this wasn't me*",
    UserAnswer.no_answer: "⌛ did not answer in time",
    UserAnswer.unreachable: "could not be asked (no Slack account found)",
}  # fmt: skip


def _people(incident: Incident) -> ContextBlock | None:
    """What the affected users answered when asked "was this you?", and an approval the
    SLA decided by default (one line, to keep the card within 50 blocks)."""
    parts = [
        f"Was this you? {code(user)}: {ANSWER_TEXT.get(answer, escape(answer))}"
        for user, answer in sorted((incident.user_answers or {}).items())
    ]
    if incident.approval_stage >= 3:  # pipeline.sla.TIMED_OUT
        parts.append("⏱️ no decision in time: the policy's default was applied (see thread)")
    elif incident.approval_stage >= 1 and incident.status == IncidentStatus.open:
        since = f" {slack_date(incident.approval_since)}" if incident.approval_since else ""
        parts.append(f"⏰ waiting for approval since{since}")
    return el.context(" · ".join(parts)) if parts else None


def action_line(action: Action, label: str) -> str:
    """One action as a line of text: its status, responder, target and who decided."""
    status = action.status
    line = f"{STATUS_EMOJI.get(status, '•')} *{escape(label)}* {code(action.target)}"
    if status == ActionStatus.denied:
        line += f" · *Denied* by {who(action.approved_by or action.requested_by)}"
    elif status == ActionStatus.awaiting_second:
        approvers = ", ".join(who(a) for a in action.approvals)
        line += f" · approved by {approvers} · *needs a second, different approver*"
    else:
        line += f" · *{escape(status)}*"
        if len(action.approvals) > 1:
            line += f" · approved by {' and '.join(who(a) for a in action.approvals)}"
        elif action.approved_by:
            line += f" · approved by {who(action.approved_by)}"
        if action.requested_by.lower() == "fido" and not action.approved_by:
            line += " · automatic (Fido)"
        elif action.requested_by not in (action.approved_by, *action.approvals):
            line += f" · requested by {who(action.requested_by)}"
        if status == ActionStatus.undone:
            line += f" · undone by {who(action.undone_by)}"
        elif status == ActionStatus.succeeded and action.expires_at is not None:
            line += f" · *undone by Fido {slack_date(action.expires_at)}* unless extended"
    line += f" · {slack_date(action.updated_at or action.created_at)}"
    if action.result:
        line += f"\n{escape(truncate(action.result, 1000))}"
    return line


def action_rows(
    incident_id: int,
    actions: Sequence[Action],
    labels: Mapping[str, str],
    can_undo: Callable[[Action], bool],
) -> list[Block]:
    """The incident's actions, each with Undo where ``can_undo`` allows it (card, Home)."""
    ordered = sorted(actions, key=lambda a: (a.created_at, a.id or 0))
    blocks: list[Block] = []
    if len(ordered) > MAX_ACTIONS:
        blocks.append(el.context(f"_{len(ordered) - MAX_ACTIONS} earlier actions not shown_"))
    for action in ordered[-MAX_ACTIONS:]:
        label = _label(labels, action.responder)
        blocks.append(el.context(action_line(action, label)))
        if action.status == ActionStatus.succeeded and action.id is not None and can_undo(action):
            value = ButtonValue(
                incident_id=incident_id,
                responder=action.responder,
                target=action.target,
                action_id=action.id,
            )
            what = f"{label} {action.target}"
            confirm = el.confirm("Undo this action?", f"Fido will undo: {what}.", "Undo")
            undo = el.button(ActionId.UNDO, f"Undo: {what}", value, str(action.id), confirm=confirm)
            blocks.append(ActionsBlock(elements=[undo]))
    return blocks


def proposal_rows(
    incident: Incident,
    incident_id: int,
    actions: Sequence[Action],
    labels: Mapping[str, str],
    plan: Planner | None,
    drawn: int,
) -> list[Block]:
    """The Approve/Deny buttons of the proposals still waiting (card, Home); ``drawn`` is
    the decision version the buttons carry, so a stale click is refused."""
    if incident.decision not in (Decision.ask_approval, Decision.auto_act):
        return []
    # a decided action has no buttons; one approved once still has, for the second approver
    decided = {(a.responder, a.target) for a in actions if a.status != ActionStatus.awaiting_second}
    proposals = {  # what runs by itself has no buttons (and its line, once it ran)
        (p.responder, p.target): p
        for p in proposals_of(incident.proposed_actions)
        if not p.automatic
    }
    pending = [p for key, p in proposals.items() if key not in decided]
    blocks: list[Block] = []
    for proposal in pending[:MAX_PROPOSALS]:
        responder, target = proposal.responder, proposal.target
        label, key = _label(labels, responder), f"{responder}:{target}"
        if len(target) > TARGET_MAX:
            blocks.append(el.context(f"⚠️ cannot act on a {len(target)}-character target"))
            continue
        value = ButtonValue(
            incident_id=incident_id,
            responder=responder,
            target=target,
            v=incident.decision_version,
            at=drawn,
        )
        what = f"{label} {target}"
        two = " Two different approvers must approve it." if proposal.two_person else ""
        text = f"Fido will {what} now."
        if plan is not None:
            enrichment = enrichment_of(incident.enrichment)
            facts = facts_for(enrichment, f"user:{target}") or facts_for(
                enrichment, f"host:{target}"
            )
            text = plan(responder, target, facts)
        confirm = el.confirm(
            "Approve containment?", f"{text} (incident #{incident_id}).{two}", "Approve"
        )
        started = (responder, target) in {
            (a.responder, a.target) for a in actions if a.status == ActionStatus.awaiting_second
        }
        step = " (2 of 2)" if started else " (1 of 2)"
        button = f"Approve: {what}" + (step if proposal.two_person else "")
        approve = el.button(ActionId.APPROVE, button, value, key, style="danger", confirm=confirm)
        blocks.append(
            ActionsBlock(elements=[approve, el.button(ActionId.DENY, "Deny", value, key)])
        )
    if len(pending) > MAX_PROPOSALS:
        more = len(pending) - MAX_PROPOSALS
        blocks.append(el.context(f"_{more} more proposals: see `/fido incident {incident_id}`_"))
    return blocks


def _timeline(events: Sequence[Event]) -> SectionBlock | None:
    if not events:
        return None
    ordered = sorted(events, key=lambda e: (e.occurred_at or e.received_at, e.id or 0))
    lines = [f"*Timeline* · {len(ordered)} event{'' if len(ordered) == 1 else 's'}"]
    for event in ordered[:MAX_EVENTS]:
        line = (
            f"• {slack_date(event.occurred_at or event.received_at)} · {code(event.detector)}"
            f" · {SEVERITY_EMOJI.get(event.severity, '⚪')} {escape(truncate(event.title, 150))}"
        )
        if event.suppressed_by:
            line += f" · 🔕 {code(event.suppressed_by)}"
        lines.append(one_line(line))
    if len(ordered) > MAX_EVENTS:
        lines.append(f"_+{len(ordered) - MAX_EVENTS} more_")
    return el.section("\n".join(lines))


def incident_card(
    incident: Incident,
    actions: Sequence[Action],
    *,
    labels: Mapping[str, str] | None = None,
    reversible: Collection[str] = frozenset(),
    can_undo: Callable[[Action], bool] | None = None,
    full: bool = False,
    events: Sequence[Event] | None = None,
    suppression_days: int = 30,
    suppression: str | None = None,
    plan: Planner | None = None,
    drawn: int | None = None,
) -> list[Block]:
    """The blocks of an incident's Slack message (no buttons while it has no id); ``full``
    shows the whole score breakdown by component instead of the top reasons, and
    ``events`` adds a timeline.

    ``labels`` maps a responder name to its button verb (``{"ad_disable_account":
    "disable"}``). A succeeded action offers Undo when its responder is in ``reversible``
    (the responders that declare ``reversible``; undo data alone says nothing: a session
    revocation leaves some and still cannot be undone) and ``can_undo`` allows it.
    ``suppression_days`` is how long the suppression offered after a false-positive close
    lasts (the policy's ``suppression_days``); ``suppression`` is the key of one already
    made from this incident, shown instead of the offer.
    """
    labels = labels or {}
    allowed = can_undo or (lambda action: True)

    def undoable(action: Action) -> bool:
        return action.responder in reversible and allowed(action)

    closed = incident.status == IncidentStatus.closed
    blocks: list[Block | None] = [
        _header(incident),
        _summary(incident),
        lifecycle.suppressed(incident),
        _score(incident, full=full),
        _degraded(incident),
        _observables(incident),
        _timeline(events or []),
        *fact_sections(enrichment_of(incident.enrichment)),
        DividerBlock(),
        _decision(incident),
        _people(incident),
        lifecycle.closed(incident) if closed else None,
    ]
    if incident.id is not None:
        blocks += action_rows(incident.id, actions, labels, undoable)
        if closed:
            blocks.append(
                lifecycle.suppress_offer(
                    incident, incident.id, days=suppression_days, suppression=suppression
                )
            )
        else:
            drawn_at = drawn if drawn is not None else int(time.time())
            blocks += proposal_rows(incident, incident.id, actions, labels, plan, drawn_at)
            blocks.append(lifecycle.close_buttons(incident, incident.id))
    return [b for b in blocks if b is not None][:MAX_BLOCKS]


def card_text(incident: Incident) -> str:
    """The notification (fallback) text; Slack reads it as mrkdwn, so the title is escaped."""
    title = escape(truncate(one_line(incident.title), 500))
    return f"[{incident.severity.upper()}] {incident.score}/100 Incident #{incident.id}: {title}"
