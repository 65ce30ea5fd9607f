"""The App Home tab, drawn for one viewer: Fido's health, the approvals waiting for *them*
(with the card's own Approve / Deny buttons, so a click is authorised exactly as on the
card), open incidents by score, and recent actions with Undo where the viewer may undo."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, DividerBlock, HeaderBlock
from slack_sdk.models.blocks.basic_components import PlainTextObject

from bot.slack import elements as el
from bot.slack.blocks import Planner, action_line, action_rows, proposal_rows
from bot.slack.detail_blocks import incident_line
from bot.slack.text import SECTION_MAX, escape, slack_date, truncate, who
from pipeline.controls import Switches
from pipeline.models import Action, Incident
from pipeline.reads import Health, State, Waiting

MAX_HOME_BLOCKS = 100  # Slack's limit for a Home tab
MAX_WAITING, MAX_PROPOSALS, MAX_INCIDENTS, MAX_ACTIONS = 5, 3, 10, 10
STATE_EMOJI = {
    State.ok: "🟢",
    State.degraded: "🟠",
    State.waiting: "⏳",
    State.breaker_open: "🔴",
    State.capped: "🚦",
}


def _switches(switches: Switches) -> list[str]:
    """Whether automatic action is paused, and which responders went past their cap."""
    lines = []
    if switches.paused:
        lines.append(
            f":double_vertical_bar: *Automatic action is paused* by {who(switches.paused_by)}"
            + (f" since {slack_date(switches.paused_at)}" if switches.paused_at else "")
            + " · `/fido resume` lifts it"
        )
    else:
        lines.append(":arrow_forward: Automatic action is on · `/fido pause` stops it")
    for responder in sorted(switches.tripped):
        lines.append(
            f":rotating_light: *{escape(responder)}* reached its hourly cap and asks first"
            f" · `/fido resume {escape(responder)}` resets it"
        )
    return lines


def notice_block(text: str) -> dict[str, Any]:
    """An answer to the viewer's last click, shown at the top of their tab (our own words;
    escaped all the same, as they may quote what was typed)."""
    return el.section(escape(truncate(text, 1000))).to_dict()


def health_blocks(health: Health) -> list[Block]:
    verdict = "✅ *Fido is healthy*" if health.ok else "⚠️ *Fido needs attention*"
    lines = [verdict, *_switches(health.switches)]
    dead = " (`fido dead-letters`)" if health.dead_letters else ""
    failed = " (`fido outbox`)" if health.failed_outbox else ""
    lines.append(
        f"{health.pending_events} alerts in the queue · {health.dead_letters} dead letters"
        f"{dead} · {health.failed_outbox} failed outbox messages{failed}"
    )
    parts = []
    for part in health.parts:
        detail = f": {escape(truncate(part.detail, 150))}" if part.detail else ""
        name = f"{part.kind} *{escape(part.name)}*"
        parts.append(f"{STATE_EMOJI[part.state]} {name} {part.state.value}{detail}")
    blocks: list[Block] = [el.section("\n".join(lines))]
    if parts:
        blocks.append(el.section(truncate("\n".join(parts), SECTION_MAX)))
    return blocks


def waiting_blocks(
    waiting: Sequence[Waiting], labels: Mapping[str, str], plan: Planner | None, drawn: int | None
) -> list[Block]:
    if not waiting:
        return [el.section("*Waiting for you*\nNothing waits for your approval.")]
    blocks: list[Block] = [el.section(f"*Waiting for you* · {len(waiting)} incidents")]
    for item in waiting[:MAX_WAITING]:
        incident = item.incident
        assert incident.id is not None
        mine = [p.model_dump(mode="json") for p in item.proposals[:MAX_PROPOSALS]]
        only_mine = incident.model_copy(update={"proposed_actions": mine})
        blocks.append(el.section(incident_line(incident)))
        at = drawn if drawn is not None else int(time.time())
        blocks += proposal_rows(only_mine, incident.id, item.actions, labels, plan, at)
    return blocks


def open_blocks(incidents: Sequence[Incident]) -> list[Block]:
    if not incidents:
        return [el.section("*Open incidents*\nNo open incidents. :dog:")]
    head = el.section(f"*Open incidents* · the {min(len(incidents), MAX_INCIDENTS)} highest scores")
    return [head, *(el.section(incident_line(i)) for i in incidents[:MAX_INCIDENTS])]


def actions_blocks(
    actions: Sequence[Action], labels: Mapping[str, str], can_undo: Callable[[Action], bool]
) -> list[Block]:
    if not actions:
        return []
    blocks: list[Block] = [el.section("*Recent actions*")]
    for action in actions[:MAX_ACTIONS]:
        label = labels.get(action.responder) or action.responder
        where = f"#{action.incident_id} " if action.incident_id is not None else "command line · "
        blocks.append(el.context(where + action_line(action, label)))
        if action.incident_id is not None:  # the card's Undo button, when allowed
            own = action_rows(action.incident_id, [action], labels, can_undo)
            blocks += [b for b in own if isinstance(b, ActionsBlock)]
    return blocks


def home_view(
    *,
    waiting: Sequence[Waiting],
    incidents: Sequence[Incident],
    actions: Sequence[Action],
    health: Health,
    labels: Mapping[str, str] | None = None,
    reversible: Collection[str] = frozenset(),
    can_undo: Callable[[Action], bool] = lambda action: False,
    plan: Planner | None = None,
    drawn: int | None = None,
) -> dict[str, Any]:
    """The ``views.publish`` view for one viewer: Undo on an action of a ``reversible``
    responder, where ``can_undo`` lets the viewer undo it."""
    labels = labels or {}

    def undoable(action: Action) -> bool:
        return action.responder in reversible and can_undo(action)

    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="Fido")),
        *health_blocks(health),
        DividerBlock(),
        *waiting_blocks(waiting, labels, plan, drawn),
        DividerBlock(),
        *open_blocks(incidents),
    ]
    if actions:
        blocks += [DividerBlock(), *actions_blocks(actions, labels, undoable)]
    return {"type": "home", "blocks": [b.to_dict() for b in blocks[:MAX_HOME_BLOCKS]]}
