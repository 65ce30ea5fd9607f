"""Card buttons: Approve, Deny, Undo. Authorisation is checked on every click by the
pipeline (and refusals are audited); this module only acknowledges, parses and hands off."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.ids import ACTION_ID_PATTERNS, ActionId, ButtonValue
from bot.slack.listeners.errors import answers_errors
from pipeline.errors import InputError
from pipeline.worker import Pipeline


def _value(action: dict[str, Any]) -> ButtonValue:
    try:
        return ButtonValue.model_validate_json(action.get("value") or "")
    except ValidationError:
        raise InputError("this button carries no valid incident reference") from None


def register(app: AsyncApp, pipeline: Pipeline) -> None:
    @app.action(ACTION_ID_PATTERNS[ActionId.APPROVE])
    @answers_errors
    async def approve(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action)
        await pipeline.approve(
            incident_id=value.incident_id,
            responder=value.responder,
            target=value.target,
            actor=body["user"]["id"],
        )

    @app.action(ACTION_ID_PATTERNS[ActionId.DENY])
    @answers_errors
    async def deny(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action)
        await pipeline.deny(
            incident_id=value.incident_id,
            responder=value.responder,
            target=value.target,
            actor=body["user"]["id"],
        )

    @app.action(ACTION_ID_PATTERNS[ActionId.UNDO])
    @answers_errors
    async def undo(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        value = _value(action)
        if value.action_id is None:
            raise InputError("this Undo button names no action")
        await pipeline.undo(
            incident_id=value.incident_id, action_id=value.action_id, actor=body["user"]["id"]
        )
