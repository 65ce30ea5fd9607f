"""The Bolt app: Slack requests in (signature-checked by Bolt), Web API calls out."""

from __future__ import annotations

from collections.abc import Mapping

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack import listeners
from pipeline.engine import Engine


def web_client(settings: Settings) -> AsyncWebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    if settings.slack_api_url:
        return AsyncWebClient(token=token, base_url=settings.slack_api_url)
    return AsyncWebClient(token=token)


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
    return app
