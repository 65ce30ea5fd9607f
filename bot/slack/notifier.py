"""The pipeline's Notifier and Messenger, implemented with Slack: post the card (to the
channel the policy routed it to, else the default one), then update it in place; reply in
its thread; post digests, notes and the "was this you?" direct message.

Slack's failures become :class:`~pipeline.errors.DeliveryError` for the outbox to act on: a
429 carries its ``Retry-After``; errors that retrying cannot fix (a missing channel, a bot
not in it, a revoked token, a missing scope) are permanent; the rest (5xx, timeouts,
connection errors) are retried with backoff. A card whose message was deleted is posted
again rather than lost.

Slack's rate limits are kept on this side too, by a :class:`Pacer`: one message per
second per channel (``chat.postMessage``, thread replies included), each Web API method
within its tier, and each viewer's App Home within its own allowance (``home_keys``). A
write whose allowance is used up is not made: it raises :class:`~pipeline.outbox.Later`,
and the outbox sends it when the allowance is back. A 429 still answered (another
replica, another app on the token) holds that channel or method for its ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import Planner, card_text, incident_card
from bot.slack.message_blocks import ask_message, digest_message, note_text, thread_news_text
from integrations.retry_after import parse_retry_after
from pipeline.clock import Clock, as_utc, system_clock
from pipeline.errors import DeliveryError
from pipeline.models import Action, Incident
from pipeline.notify import MessageRef
from pipeline.outbox import Later
from pipeline.routing import AskDM, Digest, Message, Note, Sent, ThreadNews

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


@dataclass
class _Bucket:
    rate: float  # allowances per second
    burst: float  # allowances saved up at most
    tokens: float
    at: datetime
    held_until: datetime | None = None


# Slack's documented limits: chat.postMessage one per second per channel (short bursts
# tolerated, not relied on); tier 3 methods 50+ per minute, tier 4 100+ per minute.
PER_CHANNEL = 1.0
TIERS: dict[str, tuple[float, float]] = {  # method → (per second, burst)
    "chat.update": (50 / 60, 5),
    "users.lookupByEmail": (100 / 60, 10),
    "conversations.open": (50 / 60, 5),
    "views.publish": (100 / 60, 10),
}
# views.publish is limited per user as well: each viewer's Home tab is drawn at most this
# often (a burst of 5, then one every 3 seconds), which no person reading it can outpace
PER_VIEWER = (20 / 60, 5.0)


class Pacer:
    """Token buckets for Slack's rate limits, on the outbox's clock: ``take`` answers how
    long to wait (0: go, and the allowance is used); ``hold`` obeys a ``Retry-After``."""

    def __init__(
        self,
        *,
        clock: Clock = system_clock,
        per_channel: float = PER_CHANNEL,
        tiers: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.clock = clock
        self.per_channel = per_channel
        self.tiers = dict(TIERS if tiers is None else tiers)
        self.buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: datetime) -> _Bucket | None:
        if key.startswith("channel:"):
            rate, burst = self.per_channel, 1.0
        elif key.startswith("viewer:"):
            rate, burst = PER_VIEWER
        elif key in self.tiers:
            rate, burst = self.tiers[key]
        else:
            return None
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(rate, burst, burst, now)
        elapsed = max((now - bucket.at).total_seconds(), 0.0)
        bucket.tokens, bucket.at = min(bucket.burst, bucket.tokens + elapsed * bucket.rate), now
        return bucket

    def take(self, *keys: str) -> float:
        """Seconds to wait before a call counted against every one of ``keys``; when 0,
        the call's allowance is taken from each."""
        now = as_utc(self.clock())
        buckets = [b for key in keys if (b := self._bucket(key, now)) is not None]
        wait = 0.0
        for bucket in buckets:
            if bucket.held_until is not None and bucket.held_until > now:
                wait = max(wait, (bucket.held_until - now).total_seconds())
            if bucket.tokens < 1 - 1e-6:  # (float dust is a whole allowance)
                wait = max(wait, (1 - bucket.tokens) / bucket.rate)
        if wait > 0:
            return wait
        for bucket in buckets:
            bucket.tokens = max(bucket.tokens - 1, 0.0)
        return 0.0

    def hold(self, seconds: float, *keys: str) -> None:
        now = as_utc(self.clock())
        for key in keys:
            bucket = self._bucket(key, now) or self.buckets.setdefault(
                key, _Bucket(1.0, 1.0, 0.0, now)
            )
            bucket.held_until = now + timedelta(seconds=seconds)


def _keys(method: str, channel: str | None) -> tuple[str, ...]:
    return (method, f"channel:{channel}") if method == "chat.postMessage" else (method,)


def home_keys(user: str) -> tuple[str, ...]:
    """The allowances publishing ``user``'s Home tab counts against."""
    return ("views.publish", f"viewer:{user}")


class SlackNotifier:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        labels: Mapping[str, str] | None = None,
        reversible: Collection[str] = frozenset(),
        plan: Planner | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.labels = dict(labels or {})
        self.reversible = frozenset(reversible)  # responders whose actions offer Undo
        self.plan = plan  # the confirm dialog's text for (responder, target)
        self.pacer = pacer  # None: no pacing on this side (a 429 is still honoured)

    async def _call(self, method: str, channel: str | None = None, **params: Any) -> Any:
        """One Web API write within Slack's limits (raises Later when it must wait)."""
        keys = _keys(method, channel)
        if self.pacer is not None:
            wait = self.pacer.take(*keys)
            if wait > 0:
                raise Later(f"Slack {method} allowance used up", retry_after=wait)
        if channel is not None:
            params["channel"] = channel
        try:
            return await getattr(self.client, method.replace(".", "_"))(**params)
        except SlackApiError as exc:
            error = delivery_error(exc)
            if self.pacer is not None and error.retry_after is not None:
                self.pacer.hold(error.retry_after, *keys)
            raise

    async def publish(self, incident: Incident, actions: Sequence[Action]) -> MessageRef | None:
        try:
            return await self._publish(incident, actions)
        except SlackApiError as exc:
            raise delivery_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None

    async def notice(self, text: str) -> None:
        try:
            await self._call("chat.postMessage", self.channel, text=text)
        except SlackApiError as exc:
            raise delivery_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None

    async def send(self, message: Message, *, incident: Incident | None) -> Sent:
        """A thread reply, digest, note or direct message (``pipeline/routing.py``)."""
        try:
            return await self._send(message, incident)
        except SlackApiError as exc:
            raise delivery_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}") from None

    async def _post(self, channel: str, text: str, **params: Any) -> Sent:
        response = await self._call(
            "chat.postMessage", channel, text=text, unfurl_links=False, **params
        )
        return Sent(channel=str(response["channel"]), ts=str(response["ts"]))

    async def _send(self, message: Message, incident: Incident | None) -> Sent:
        if isinstance(message, ThreadNews):
            if incident is None or not (incident.message_channel and incident.message_ts):
                return Sent()
            return await self._post(
                incident.message_channel,
                thread_news_text(message),
                thread_ts=incident.message_ts,
            )
        if isinstance(message, Digest):
            text, blocks = digest_message(message)
            return await self._post(
                message.channel or self.channel, text, blocks=[b.to_dict() for b in blocks]
            )
        if isinstance(message, AskDM):
            return await self._ask(message)
        assert isinstance(message, Note)
        text = note_text(message, incident)
        home = (incident.message_channel if incident else None) or self.channel
        if message.channel and message.channel != home:
            return await self._post(message.channel, text)
        thread = incident.message_ts if incident is not None else None
        if thread is None:
            return await self._post(home, text)
        return await self._post(home, text, thread_ts=thread, reply_broadcast=message.broadcast)

    async def _ask(self, dm: AskDM) -> Sent:
        """Find the user by their directory e-mail, open a DM, ask."""
        try:
            found = await self._call("users.lookupByEmail", email=dm.email)
        except SlackApiError as exc:
            if exc.response.get("error") == "users_not_found":
                return Sent()  # nobody to ask: recorded as unreachable, not retried
            raise
        user = str(found["user"]["id"])
        opened = await self._call("conversations.open", users=user)
        text, blocks = ask_message(dm)
        sent = await self._post(
            str(opened["channel"]["id"]), text, blocks=[b.to_dict() for b in blocks]
        )
        return Sent(channel=sent.channel, ts=sent.ts, user=user)

    async def _publish(self, incident: Incident, actions: Sequence[Action]) -> MessageRef:
        blocks = incident_card(
            incident, actions, labels=self.labels, reversible=self.reversible, plan=self.plan
        )
        text = card_text(incident)
        dumped = [b.to_dict() for b in blocks]
        if incident.message_channel and incident.message_ts:
            try:
                await self._call(
                    "chat.update",
                    incident.message_channel,
                    ts=incident.message_ts,
                    blocks=dumped,
                    text=text,
                )
                return MessageRef(incident.message_channel, incident.message_ts)
            except SlackApiError as exc:
                if exc.response.get("error") not in GONE:
                    raise
        channel = incident.message_channel or self.channel  # routed by the policy, or default
        response = await self._call(
            "chat.postMessage", channel, blocks=dumped, text=text, unfurl_links=False
        )
        return MessageRef(str(response["channel"]), str(response["ts"]))
