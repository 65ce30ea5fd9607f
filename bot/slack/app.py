"""The Bolt app: Slack requests in (signature-checked by Bolt), Web API calls out."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import async_default_handlers
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack import listeners
from bot.slack.listeners import ask
from pipeline import observe
from pipeline.engine import Engine


class CountRateLimits(AsyncRetryHandler):
    """Sees every Web API answer and retries none: a 429 is counted (by method, in
    ``fido_slack_rate_limited``) and left to the caller, which honours its Retry-After."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            observe.observer().rate_limited("slack", request.url.rstrip("/").rsplit("/", 1)[-1])
        return False


def web_client(settings: Settings, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client. Given ``session`` (one per process, made and closed by its
    event loop), every call reuses its pooled connections; without it each call opens a
    connection of its own (and, against Slack, a TLS handshake). Every 429 it meets is
    counted, whoever made the call."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    options: dict[str, Any] = {
        "token": token,
        "session": session,
        "retry_handlers": [*async_default_handlers(), CountRateLimits()],
    }
    if settings.slack_api_url:
        options["base_url"] = settings.slack_api_url
    return AsyncWebClient(**options)


class _TokenInClient(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and, given our client as well, warns that the token
    "will be unused": the client carries that very token (``web_client``), so it is no
    warning. Only that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_BOLT_LOG = logging.getLogger("slack_bolt.AsyncApp")
if not any(isinstance(f, _TokenInClient) for f in _BOLT_LOG.filters):
    _BOLT_LOG.addFilter(_TokenInClient())


def build_bolt_app(
    settings: Settings,
    engine: Engine,
    client: AsyncWebClient,
    labels: Mapping[str, str] | None = None,
) -> AsyncApp:
    secret = settings.slack_signing_secret
    app = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        # Socket Mode connections are authenticated by the app token, not signed.
        request_verification_enabled=settings.slack_app_token is None,
    )
    listeners.register(app, engine, labels or {})
    ask.register(app, engine)  # the "was this you?" answers
    return app
