"""The Bolt app: Slack requests in (signature-checked by Bolt), Web API calls out."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack import listeners
from bot.slack.listeners import ask
from pipeline.engine import Engine


def web_client(settings: Settings, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client. Given ``session`` (one per process, made and closed by its
    event loop), every call reuses its pooled connections; without it each call opens a
    connection of its own (and, against Slack, a TLS handshake)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    if settings.slack_api_url:
        return AsyncWebClient(token=token, base_url=settings.slack_api_url, session=session)
    return AsyncWebClient(token=token, session=session)


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
