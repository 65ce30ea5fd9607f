"""The one error handler: Fido's errors become a clear ephemeral reply, others a short apology."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond

from pipeline.errors import FidoError, InputError, NotAuthorized

log = logging.getLogger(__name__)


def message_for(error: Exception) -> str:
    if isinstance(error, NotAuthorized):
        return f":no_entry: {error}. This attempt has been recorded."
    if isinstance(error, InputError):
        return f":warning: {error}"
    if isinstance(error, FidoError):
        return f":x: {error}"
    return ":x: Something went wrong inside Fido; the error has been logged."


def register(app: AsyncApp) -> None:
    @app.error
    async def on_error(
        error: Exception, body: dict[str, Any], respond: AsyncRespond | None
    ) -> None:
        if not isinstance(error, FidoError):
            log.error("unhandled error in a Slack listener", exc_info=error)
        else:
            log.info("refused a Slack request: %s", error)
        if respond is not None:
            await respond(
                text=message_for(error), response_type="ephemeral", replace_original=False
            )
