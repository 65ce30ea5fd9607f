"""The pipeline's Notifier, implemented with Slack: post the card, then update it in place.

Slack's failures become :class:`~pipeline.errors.DeliveryError` for the outbox to act on: a
429 carries its ``Retry-After``; errors that retrying cannot fix (a missing channel, a bot
not in it, a revoked token, a missing scope) are permanent; the rest (5xx, timeouts,
connection errors) are retried with backoff. A card whose message was deleted is posted
again rather than lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import Planner, card_text, incident_card
from integrations.retry_after import parse_retry_after
from pipeline.errors import DeliveryError
from pipeline.models import Action, Incident
from pipeline.notify import MessageRef

PERMANENT = frozenset(
    {
        "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed",
        "account_inactive", "token_revoked", "token_expired", "missing_scope", "no_permission",
        "invalid_blocks", "invalid_blocks_format", "msg_too_long", "restricted_action",
        "team_access_not_granted", "ekm_access_denied",
    }
)  # fmt: skip
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


def delivery_error(exc: SlackApiError) -> DeliveryError:
    """What the outbox should do about a Slack API error."""
    response = exc.response
    error = str(response.get("error") or f"HTTP {response.status_code}")
    if response.status_code == 429 or error == "ratelimited":
        wait = parse_retry_after(str(response.headers.get("Retry-After") or "")) or 1.0
        return DeliveryError(f"Slack rate limit: {error}", retry_after=wait)
    return DeliveryError(f"Slack: {error}", permanent=error in PERMANENT)


class SlackNotifier:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        labels: Mapping[str, str] | None = None,
        plan: Planner | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.labels = dict(labels or {})
        self.plan = plan  # the confirm dialog's text for (responder, target)

    async def publish(self, incident: Incident, actions: Sequence[Action]) -> MessageRef | None:
        try:
            return await self._publish(incident, actions)
        except SlackApiError as exc:
            raise delivery_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None

    async def notice(self, text: str) -> None:
        try:
            await self.client.chat_postMessage(channel=self.channel, text=text)
        except SlackApiError as exc:
            raise delivery_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None

    async def _publish(self, incident: Incident, actions: Sequence[Action]) -> MessageRef:
        blocks = incident_card(incident, actions, labels=self.labels, plan=self.plan)
        text = card_text(incident)
        if incident.message_channel and incident.message_ts:
            try:
                await self.client.chat_update(
                    channel=incident.message_channel,
                    ts=incident.message_ts,
                    blocks=blocks,
                    text=text,
                )
                return MessageRef(incident.message_channel, incident.message_ts)
            except SlackApiError as exc:
                if exc.response.get("error") not in GONE:
                    raise
        response = await self.client.chat_postMessage(
            channel=self.channel, blocks=blocks, text=text, unfurl_links=False
        )
        return MessageRef(str(response["channel"]), str(response["ts"]))
