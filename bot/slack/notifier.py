"""The pipeline's Notifier, implemented with Slack: post the card, then update it in place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import card_text, incident_card
from pipeline.models import Action, Incident
from pipeline.notify import MessageRef


class SlackNotifier:
    def __init__(
        self, client: AsyncWebClient, *, channel: str, labels: Mapping[str, str] | None = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.labels = dict(labels or {})

    async def publish(self, incident: Incident, actions: Sequence[Action]) -> MessageRef | None:
        blocks = incident_card(incident, actions, labels=self.labels)
        text = card_text(incident)
        if incident.message_channel and incident.message_ts:
            await self.client.chat_update(
                channel=incident.message_channel, ts=incident.message_ts, blocks=blocks, text=text
            )
            return MessageRef(incident.message_channel, incident.message_ts)
        response = await self.client.chat_postMessage(
            channel=self.channel, blocks=blocks, text=text, unfurl_links=False
        )
        return MessageRef(str(response["channel"]), str(response["ts"]))
