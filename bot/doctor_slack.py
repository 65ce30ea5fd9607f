"""``fido doctor``'s Slack checks: the bot token, its scopes, and the channels it posts to.

``auth.test`` proves the token; Slack names the scopes a token was granted in the
``X-OAuth-Scopes`` header of every Web API answer, compared with the bot scopes
``manifest.yml`` asks for; ``conversations.info`` says whether the bot is a member of each
channel (``FIDO_SLACK_CHANNEL`` and every channel the policy names). Read-only calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.doctor import Check, failed, ok, skipped
from bot.settings import Settings
from pipeline.policy import Policy

MANIFEST = Path(__file__).resolve().parents[1] / "manifest.yml"

_TOKEN_FIX = {
    "invalid_auth": "SLACK_BOT_TOKEN is wrong: copy the Bot User OAuth Token (xoxb-…) "
    "from the app's OAuth & Permissions page",
    "not_authed": "set SLACK_BOT_TOKEN",
    "token_revoked": "the token was revoked: reinstall the app and copy its new bot token",
    "account_inactive": "the app was uninstalled or its workspace deleted: reinstall it",
}


def manifest_scopes(path: Path = MANIFEST) -> list[str] | None:
    """The bot scopes the app manifest asks for; None when there is no manifest here."""
    import yaml

    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    scopes = manifest.get("oauth_config", {}).get("scopes", {}).get("bot", [])
    return [str(scope) for scope in scopes]


def channels(settings: Settings, policy: Policy) -> list[str]:
    """Every channel Fido may post to: the setting, then each one the policy names."""
    found = [settings.slack_channel] if settings.slack_channel else []
    for value in _channel_values(policy.model_dump()):
        if value not in found:
            found.append(value)
    return found


def _channel_values(node: Any, key: str = "", parent: str = "") -> Iterator[str]:
    """Values of every ``*channel`` key (and ``routing.default``) in the policy."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _channel_values(value, str(name), key)
    elif isinstance(node, list):
        for item in node:
            yield from _channel_values(item, key, parent)
    elif isinstance(node, str) and node:
        if key.endswith("channel") or (key == "default" and parent == "routing"):
            yield node


def _client(settings: Settings, timeout: float, token: Any) -> Any:
    """A Web API client for ``token`` (a SecretStr) at SLACK_API_URL, if set."""
    from slack_sdk.web.async_client import AsyncWebClient

    options: dict[str, Any] = {"timeout": max(1, int(timeout))}
    if settings.slack_api_url:
        options["base_url"] = settings.slack_api_url
    return AsyncWebClient(token=token.get_secret_value(), **options)


def _header(response: Any, name: str) -> str | None:
    for key, value in (getattr(response, "headers", None) or {}).items():
        if key.lower() == name.lower():
            return value if isinstance(value, str) else ",".join(value)
    return None


async def _call(
    client: Any, api: str, *, method: str = "GET", **params: Any
) -> tuple[Any, str | None]:
    """(response, None) or (response or None, Slack's error code or what went wrong)."""
    from slack_sdk.errors import SlackApiError

    try:
        response = await client.api_call(api, http_verb=method, params=params)
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        status = getattr(exc.response, "status_code", None)
        return exc.response, str(error or f"HTTP {status}")
    except TimeoutError:
        return None, "no answer (timed out)"
    except Exception as exc:  # aiohttp's connection errors and their kin
        return None, f"cannot reach Slack ({type(exc).__name__}: {exc})"
    return response, None


async def checks(settings: Settings, policy: Policy, *, timeout: float) -> list[Check]:
    if settings.slack_bot_token is None:
        return [skipped("slack", "SLACK_BOT_TOKEN is not set (reported above)")]
    client = _client(settings, timeout, settings.slack_bot_token)
    response, error = await _call(client, "auth.test")
    if error is not None:
        fix = _TOKEN_FIX.get(
            error, "check SLACK_BOT_TOKEN, SLACK_API_URL and that Slack can be reached"
        )
        if error == "ratelimited":
            fix = "Slack is rate limiting this token: run fido doctor again in a minute"
        return [failed("slack token", f"auth.test failed: {error}", fix)]
    found = [ok("slack token", f"bot @{response.get('user')} in workspace {response.get('team')}")]
    found.append(_scopes(_header(response, "x-oauth-scopes")))
    if settings.slack_app_token is not None:
        found.append(await _socket_mode(settings, timeout))
    for channel in channels(settings, policy):
        found.append(await _membership(client, channel))
    if not channels(settings, policy):
        found.append(skipped("slack channel", "FIDO_SLACK_CHANNEL is not set (reported above)"))
    return found


async def _socket_mode(settings: Settings, timeout: float) -> Check:
    """The app-level token, by ``apps.connections.open``: Slack answers with a WebSocket
    URL, which is left unused (no connection is made)."""
    client = _client(settings, timeout, settings.slack_app_token)
    _, error = await _call(client, "apps.connections.open", method="POST")
    if error is None:
        return ok("slack socket mode", "the app-level token opens Socket Mode connections")
    fix = "SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write"
    if error == "not_allowed_token_type":
        fix = "SLACK_APP_TOKEN holds a bot or user token: " + fix
    return failed("slack socket mode", f"apps.connections.open failed: {error}", fix)


def _scopes(header: str | None) -> Check:
    wanted = manifest_scopes()
    if wanted is None:
        return skipped("slack scopes", "not checked: manifest.yml is not beside this install")
    if header is None:
        return skipped("slack scopes", "not checked: Slack did not name the granted scopes")
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing = [scope for scope in wanted if scope not in granted]
    if missing:
        return failed(
            "slack scopes",
            f"missing {', '.join(missing)}",
            "add them to the app (paste manifest.yml into the app's manifest) and reinstall "
            "it to the workspace",
        )
    return ok("slack scopes", f"all {len(wanted)} scopes manifest.yml asks for are granted")


async def _membership(client: Any, channel: str) -> Check:
    name = f"slack channel {channel}"
    response, error = await _call(client, "conversations.info", channel=channel)
    if error == "channel_not_found":
        return failed(
            name,
            "the bot cannot see this channel (a wrong id, or a private channel it is not in)",
            f"check the channel id, then /invite @fido in {channel}",
        )
    if error == "missing_scope":
        return failed(
            name,
            "the token may not read channel details (missing_scope)",
            "grant channels:read and groups:read (manifest.yml) and reinstall the app",
        )
    if error is not None:
        return failed(name, f"conversations.info failed: {error}", "run fido doctor again")
    info = response.get("channel") or {}
    label = f"#{info['name']}" if info.get("name") else channel
    if info.get("is_archived"):
        return failed(name, f"{label} is archived", "unarchive it or choose another channel")
    if not info.get("is_member"):
        return failed(name, f"the bot is not a member of {label}", f"/invite @fido in {label}")
    return ok(name, f"the bot is a member of {label}")
