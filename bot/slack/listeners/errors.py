"""Errors in listeners become one clear ephemeral reply.

Two paths lead here, both through :func:`reply`:

- ``@app.error`` catches what escapes a listener before it acknowledged.
- :func:`answers_errors` wraps each listener for what is raised *after* ``ack()``. Bolt
  1.x (``process_before_response=False``) resets the acknowledgement when a listener raises
  after acking, so Slack would see a 404 after three seconds instead of our reply; catching
  Fido's errors inside the listener keeps the HTTP answer a 200 and the reply ephemeral.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond

from pipeline.errors import FidoError, InputError, NotAuthorized

log = logging.getLogger(__name__)

Listener = Callable[..., Awaitable[None]]


def message_for(error: Exception) -> str:
    if isinstance(error, NotAuthorized):
        return f":no_entry: {error}. This attempt has been recorded."
    if isinstance(error, InputError):
        return f":warning: {error}"
    if isinstance(error, FidoError):
        return f":x: {error}"
    return ":x: Something went wrong inside Fido; the error has been logged."


async def reply(error: Exception, respond: AsyncRespond | None) -> None:
    if isinstance(error, FidoError):
        log.info("refused a Slack request: %s", error)
    else:
        log.error("unhandled error in a Slack listener", exc_info=error)
    if respond is not None:
        await respond(text=message_for(error), response_type="ephemeral", replace_original=False)


def answers_errors(listener: Listener) -> Listener:
    """Wrap a listener (which must take ``respond``) so its errors are answered."""

    @functools.wraps(listener)
    async def wrapper(**kwargs: Any) -> None:
        try:
            await listener(**kwargs)
        except Exception as error:  # every error is answered; unexpected ones are logged
            await reply(error, kwargs.get("respond"))

    return wrapper


def register(app: AsyncApp) -> None:
    @app.error
    async def on_error(error: Exception, respond: AsyncRespond | None) -> None:
        await reply(error, respond)
