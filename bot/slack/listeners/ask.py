"""The "was this you?" direct message: a click on **Yes, this was me** or **No, this
wasn't me**. The pipeline checks that the clicker is the user asked, that they have not
answered yet and that the time to answer has not run out (refusals are audited), records
and audits the answer, and the incident is scored again at once; the message is replaced
by a thank-you without buttons."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.listeners.errors import answers_errors
from bot.slack.message_blocks import ASK_PATTERN, AskValue, answered_message
from pipeline import ask
from pipeline.engine import Engine
from pipeline.errors import InputError
from pipeline.models import UserAnswer


def register(app: AsyncApp, engine: Engine) -> None:
    @app.action(ASK_PATTERN)
    @answers_errors
    async def answer(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        try:
            value = AskValue.model_validate_json(action.get("value") or "")
        except ValidationError:
            raise InputError("this button carries no valid answer (an old message?)") from None
        try:
            check = await ask.answer(
                engine.db,
                check_id=value.check_id,
                actor=body["user"]["id"],
                said=UserAnswer(value.answer),
                timeout_minutes=engine.policy.ask_user.timeout_minutes,
                clock=engine.triage.clock,
            )
        except ask.TooLate as late:
            if late.expired:  # this click found the question past its time: "no answer"
                await engine.refresh(late.incident_id)
            raise
        await engine.refresh(check.incident_id)  # the answer is a score signal: now
        text, blocks = answered_message(check.status)
        await respond(text=text, blocks=[b.to_dict() for b in blocks], replace_original=True)
