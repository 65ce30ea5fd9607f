"""App Home, drawn for each viewer: published when they open Fido's tab, and again for
everyone who opened it recently whenever something changes — a click, a command, an
automatic action or an expiry (the incident service's ``kick``), debounced so a burst of
changes costs one ``views.publish`` per viewer.

Drawing keeps Slack's limits (``views.publish``'s tier, and each viewer's own allowance,
in a :class:`~bot.slack.notifier.Pacer`): a drawing that must wait — the allowance used
up, or a 429 whose ``Retry-After`` holds the method — is made once the wait is over, with
what is current then. Any other failure is logged and dropped: the tab is a view of the
database, drawn again at the next change or opening, so nothing is lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.home import home_view, notice_block
from bot.slack.notifier import Pacer, delivery_error, home_keys
from pipeline import reads
from pipeline.engine import Engine

log = logging.getLogger(__name__)

KEEP_SECONDS = 30 * 60  # a viewer's tab is kept current this long after they opened it
WATCH_SECONDS = 10.0  # how often a change nobody announced (a new incident) is looked for
MAX_VIEWERS = 50


class HomeRefresher:
    def __init__(
        self,
        engine: Engine,
        client: AsyncWebClient,
        labels: Mapping[str, str],
        *,
        delay: float = 0.3,
        pacer: Pacer | None = None,
    ) -> None:
        self.engine, self.client, self.labels, self.delay = engine, client, dict(labels), delay
        self.pacer = pacer or Pacer()
        self._waiting: dict[str, asyncio.Task[None]] = {}  # user → their drawing held back
        self._notices: dict[str, str] = {}  # user → the notice that drawing will show
        self.viewers: dict[str, float] = {}  # user → when they last opened or used the tab
        self.watch = WATCH_SECONDS
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._dirty = False
        self._signature: tuple[Any, ...] | None = None  # of what the tabs show now

    async def view(self, user: str) -> dict[str, Any]:
        engine = self.engine
        service = engine.incidents
        is_approver = user in service.approvers
        return home_view(
            waiting=await reads.waiting_for(service, user),
            incidents=await service.open_incidents(limit=10),
            actions=await service.recent_actions(limit=10),
            health=await reads.health(
                db=engine.db,
                policy=engine.policy,
                enrichers=engine.enrichers,
                responders=engine.responders,
                now=service.now(),
            ),
            labels=self.labels,
            reversible=service.reversible(),
            can_undo=lambda action: is_approver,
        )

    async def publish(self, user: str, *, notice: str | None = None) -> None:
        """Draw ``user``'s tab now, or once Slack's limits allow (see the module)."""
        self.seen(user)
        keys = home_keys(user)
        wait = self.pacer.take(*keys)
        if wait > 0:
            self._later(user, wait, notice)
            return
        try:
            view = await self.view(user)
            if notice:
                view["blocks"].insert(1, notice_block(notice))
            await self.client.views_publish(user_id=user, view=view)
        except SlackApiError as exc:
            retry_after = delivery_error(exc).retry_after
            if retry_after is None:  # drawn again at the next change or opening
                log.warning("App Home for %s not published: %s", user, exc)
                return
            self.pacer.hold(retry_after, *keys)
            self._later(user, retry_after, notice)
        except Exception as exc:  # drawn again at the next change or opening
            log.warning("App Home for %s not published: %s", user, exc)

    def _later(self, user: str, wait: float, notice: str | None) -> None:
        """Draw ``user``'s tab in ``wait`` seconds. One drawing waits per viewer: later
        reasons to draw join it, and it shows the latest notice."""
        if notice:
            self._notices[user] = notice
        pending = self._waiting.get(user)
        if pending is None or pending.done():
            loop = asyncio.get_running_loop()
            self._waiting[user] = loop.create_task(self._after(user, wait))

    async def _after(self, user: str, wait: float) -> None:
        await asyncio.sleep(wait)
        self._waiting.pop(user, None)  # a drawing that must wait again is held anew
        await self.publish(user, notice=self._notices.pop(user, None))

    def seen(self, user: str) -> None:
        self.viewers[user] = time.monotonic()
        if len(self.viewers) > MAX_VIEWERS:
            oldest = min(self.viewers, key=self.viewers.__getitem__)
            del self.viewers[oldest]
        if self._watcher is None or self._watcher.done():
            try:
                self._watcher = asyncio.get_running_loop().create_task(self._watch())
            except RuntimeError:  # no loop: nobody is looking
                pass

    def _recent(self) -> list[str]:
        now = time.monotonic()
        for user, at in list(self.viewers.items()):
            if now - at > KEEP_SECONDS:
                self.viewers.pop(user, None)
        return list(self.viewers)

    async def _fingerprint(self) -> tuple[Any, ...] | None:
        try:
            return await reads.signature(self.engine.db, self.engine.enrichers)
        except Exception as exc:  # looked for again at the next tick
            log.warning("App Home: cannot read what changed: %s", exc)
            return None

    async def _watch(self) -> None:
        """While someone has the tab open: changes the incident service did not announce
        (a new incident from triage, a breaker opening, a source failing) redraw it too."""
        self._signature = await self._fingerprint()
        while self._recent():
            await asyncio.sleep(self.watch)
            found = await self._fingerprint()
            if found is not None and found != self._signature:
                self._signature = found  # this change is being drawn: not poked twice
                self.poke()

    def poke(self) -> None:
        """Something changed: draw every recent viewer's tab again, shortly. A change
        while they are being drawn draws them once more."""
        self._dirty = True
        if self._task is not None and not self._task.done():
            return
        try:
            self._task = asyncio.get_running_loop().create_task(self._refresh())
        except RuntimeError:  # no loop (a command-line tool): nobody is looking
            return

    async def _refresh(self) -> None:
        while self._dirty:
            self._dirty = False
            await asyncio.sleep(self.delay)
            self._signature = await self._fingerprint()
            for user in self._recent():
                await self.publish(user)


class HomeReply:
    """``respond`` for a click in the Home tab, which has no ``response_url``: the answer
    (a refusal, an error) is shown at the top of the viewer's tab, drawn again."""

    def __init__(self, refresher: HomeRefresher, user: str) -> None:
        self.refresher, self.user = refresher, user

    async def __call__(self, text: str | None = None, **_: Any) -> None:
        await self.refresher.publish(self.user, notice=text or None)


def _chain(first: Callable[[], None] | None, then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        if first is not None:
            first()
        then()

    return both


def register(app: AsyncApp, engine: Engine, labels: Mapping[str, str]) -> HomeRefresher:
    refresher = HomeRefresher(engine, app.client, labels)
    # the incident service calls this after every change it queues (clicks, commands,
    # automatic actions, expiries); the engine's sender wake-up keeps running first
    engine.incidents.on_enqueue = _chain(engine.incidents.on_enqueue, refresher.poke)

    @app.event("app_home_opened")
    async def opened(event: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab") not in (None, "home") or not isinstance(user, str) or not user:
            return
        await refresher.publish(user)

    @app.middleware
    async def clicked_in_home(
        body: dict[str, Any], context: AsyncBoltContext, next_: Callable[[], Awaitable[None]]
    ) -> None:
        """A click in someone's Home tab: keep their tab current after it, and answer
        there (a refusal, an error) since a tab has no ``response_url``."""
        user, view = body.get("user"), body.get("view")
        user = user.get("id") if isinstance(user, dict) else None
        if isinstance(view, dict) and view.get("type") == "home" and isinstance(user, str) and user:
            refresher.seen(user)
            context["respond"] = HomeReply(refresher, user)
        await next_()

    return refresher
