"""Card buttons: Approve, Deny, Undo, Close (with a verdict), Suppress similar alerts, and
Remove in ``/fido suppressions``. Authorisation is checked on every click by the incident
service (and refusals are audited), which also updates the card; this module only
acknowledges, parses and hands off."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.ids import (
    ACTION_ID_PATTERNS,
    ActionId,
    ButtonValue,
    IncidentValue,
    SuppressionValue,
    ValueModel,
)
from bot.slack.listeners.errors import answers_errors
from bot.slack.listeners.lifecycle_commands import suppress_like
from bot.slack.suppression_blocks import suppressions_blocks, text_of
from pipeline.errors import InputError
from pipeline.incidents import IncidentService

V = TypeVar("V", bound=ValueModel)


def _value(action: dict[str, Any], model: type[V]) -> V:
    try:
        return model.model_validate_json(action.get("value") or "")
    except ValidationError:
        raise InputError("this button carries no valid reference (an old message?)") from None


def _drawn(value: ButtonValue) -> dict[str, Any]:
    """The card version and drawing time an Approve or Deny button carries (required)."""
    if value.v is None or value.at is None:
        raise InputError(
            f"this button is from an older card: run `/fido incident {value.incident_id}` "
            "for a current one"
        )
    return {"version": value.v, "issued": datetime.fromtimestamp(value.at, UTC)}


def register(app: AsyncApp, incidents: IncidentService) -> None:
    @app.action(ACTION_ID_PATTERNS[ActionId.APPROVE])
    @answers_errors
    async def approve(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action, ButtonValue)
        await incidents.approve(
            incident_id=value.incident_id,
            responder=value.responder,
            target=value.target,
            actor=body["user"]["id"],
            **_drawn(value),
        )

    @app.action(ACTION_ID_PATTERNS[ActionId.DENY])
    @answers_errors
    async def deny(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action, ButtonValue)
        await incidents.deny(
            incident_id=value.incident_id,
            responder=value.responder,
            target=value.target,
            actor=body["user"]["id"],
            **_drawn(value),
        )

    @app.action(ACTION_ID_PATTERNS[ActionId.UNDO])
    @answers_errors
    async def undo(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action, ButtonValue)
        if value.action_id is None:
            raise InputError("this Undo button names no action")
        await incidents.undo(
            incident_id=value.incident_id, action_id=value.action_id, actor=body["user"]["id"]
        )

    @app.action(ACTION_ID_PATTERNS[ActionId.CLOSE])
    @answers_errors
    async def close(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action, IncidentValue)
        if value.verdict is None:
            raise InputError("this Close button names no verdict")
        await incidents.close(
            incident_id=value.incident_id, verdict=value.verdict, actor=body["user"]["id"]
        )

    @app.action(ACTION_ID_PATTERNS[ActionId.SUPPRESS])
    @answers_errors
    async def suppress(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action, IncidentValue)
        reply = await suppress_like(
            incidents, incident_id=value.incident_id, actor=body["user"]["id"], days=value.days
        )
        await respond(text=reply, response_type="ephemeral", replace_original=False)

    @app.action(ACTION_ID_PATTERNS[ActionId.REMOVE_SUPPRESSION])
    @answers_errors
    async def remove(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action, SuppressionValue)
        await incidents.remove_suppression(
            suppression_id=value.suppression_id, actor=body["user"]["id"]
        )
        # the list it was clicked in is an ephemeral answer: show it again, without this one
        left = await incidents.suppressions()
        await respond(
            text=text_of(left),
            blocks=[b.to_dict() for b in suppressions_blocks(left, removed=value.suppression_id)],
            response_type="ephemeral",
            replace_original=True,
        )
