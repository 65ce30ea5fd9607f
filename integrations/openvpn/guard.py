"""Keep blocked common names off an OpenVPN server that Fido cannot configure.

Without a client-config-dir to write ``disable`` into, ending a session is not enough: the
client reconnects a second later. The :class:`SessionGuard` keeps one management
connection open while any name is blocked and ends their sessions again as they come back:

* With ``log on`` OpenVPN reports each connection as it is made (``>LOG:…[jdoe] Peer
  Connection Initiated…``); a log line naming a blocked name triggers a sweep at once —
  ``status 3``, then ``kill`` for each blocked name listed. A sweep also runs every
  ``poll_interval`` seconds, for servers whose verbosity logs too little.
* When the server runs with ``--management-client-auth`` it asks its management client to
  admit every new connection (``>CLIENT:CONNECT``). The guard then denies blocked names
  (``client-deny``) before their tunnel exists, and admits everyone else
  (``client-auth-nt``; OpenVPN has already checked their certificates) — while it runs it
  is the server's gate, so it keeps its connection even once nothing is blocked.
* A dropped or refused connection is retried with exponential backoff.

OpenVPN serves one management client at a time: while the guard holds the interface, other
management clients (an operator's telnet, another Fido replica) wait. Hence it lets go as
soon as nothing is blocked, and every command Fido sends meanwhile goes through it.

Which names are blocked is the caller's to keep: Fido stores the containments in its
database and its leading replica hands the guard the names in force every few seconds
(:meth:`reconcile`); :meth:`block` and :meth:`unblock` act at once for a click handled in
this process, ahead of the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from integrations.openvpn.management import (
    ManagementClient,
    ManagementError,
    end_sessions,
    validate_common_name,
)
from pipeline.errors import IntegrationError

log = logging.getLogger(__name__)

Connector = Callable[[], Awaitable[ManagementClient]]
_AUTH_REQUEST = re.compile(r">CLIENT:(CONNECT|REAUTH),(\d+),(\d+)$")
_MIN_SWEEP_GAP = 0.2  # seconds: a burst of log lines about one reconnect makes one sweep
# seconds a name blocked or unblocked in this process outranks the caller's list: the
# action that did it is stored only once it returns, so a list read meanwhile lags behind
LOCAL_GRACE = 5.0


class SessionGuard:
    """Ends the sessions of blocked common names whenever they reconnect.

    ``blocked``: names blocked before this process started (restored from storage).
    ``hold``: keep the management connection even when nothing is blocked (a server with
    ``--management-client-auth`` needs an answer for every connection)."""

    def __init__(
        self,
        connect: Connector,
        *,
        blocked: Iterable[str] = (),
        poll_interval: float = 2.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        timeout: float = 5.0,
        hold: bool = False,
    ) -> None:
        self._connect = connect
        self._blocked = {validate_common_name(name) for name in blocked}
        self.poll_interval = poll_interval
        self.backoff = backoff
        self.timeout = timeout
        self.hold = hold
        self.gatekeeper = False  # the server asked us to admit a client: keep answering
        self.denied = 0  # connections refused with client-deny
        self._swept: dict[str, int] = {}  # sessions each name lost to sweeps
        self._claimed = 0  # of those, ended while block() for the name was running
        self.last_error: str | None = None
        self._client: ManagementClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._last_sweep = 0.0
        self._sweep_soon = False  # a name was added: sweep without waiting for the timer
        self._changed: dict[str, float] = {}  # when block/unblock last touched each name

    @property
    def blocked(self) -> frozenset[str]:
        """The names kept out right now (what the caller stores)."""
        return frozenset(self._blocked)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def rekills(self) -> int:
        """Sessions ended again after :meth:`block` had ended the ones it found."""
        return sum(self._swept.values()) - self._claimed

    def reconcile(self, names: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
        """Make ``names`` the blocked set (the containments in force, as stored) and run
        the guard; (names added, names released). A name this process blocked or unblocked
        within ``LOCAL_GRACE`` seconds keeps its state: the list may predate that change."""
        wanted = {validate_common_name(name) for name in names}
        now = asyncio.get_running_loop().time()
        recent = {name for name, when in self._changed.items() if now - when < LOCAL_GRACE}
        self._changed = {name: self._changed[name] for name in recent}
        added = frozenset(wanted - self._blocked - recent)
        released = frozenset(self._blocked - wanted - recent)
        self._blocked = (self._blocked | added) - released
        if added:
            self._sweep_soon = True
        self._wake.set()
        self._run_in_background()
        return added, released

    async def start(self) -> None:
        """Run the guard in the background (idempotent)."""
        self._run_in_background()

    def _run_in_background(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="openvpn-session-guard")

    async def stop(self) -> None:
        """Stop guarding and close the management connection. Blocked names are kept
        (:meth:`reconcile` with none forgets them)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def release(self) -> None:
        """Stop guarding and forget every name: another process guards them now."""
        await self.stop()
        self._blocked.clear()
        self._changed.clear()

    async def block(self, common_name: str) -> int:
        """Keep ``common_name`` out from now on and end its current sessions; how many.

        The name is blocked before its sessions are ended, so a reconnect in between is
        caught. IntegrationError when the management interface cannot be reached within
        ``timeout`` (the name then stays blocked: call :meth:`unblock` to give up)."""
        name = validate_common_name(common_name)
        swept = self._swept.get(name, 0)
        self._blocked.add(name)
        self._touch(name)
        await self.start()
        try:
            ended = await end_sessions(await self._session(), name)
        finally:
            self._touch(name)
        # a sweep may have ended them first (the name is already blocked): count those too
        by_sweeps = self._swept.get(name, 0) - swept
        self._claimed += by_sweeps
        return ended + by_sweeps

    async def unblock(self, common_name: str) -> bool:
        """Let ``common_name`` connect again; whether it was blocked."""
        try:
            self._blocked.remove(common_name)
        except KeyError:
            return False
        self._touch(common_name)
        self._wake.set()  # nothing left to guard: let the interface go
        return True

    def _touch(self, name: str) -> None:
        self._changed[name] = asyncio.get_running_loop().time()

    async def _session(self) -> ManagementClient:
        """The guard's connection, waiting up to ``timeout`` for it; IntegrationError when
        the next attempt fails or none succeeds in time."""
        if self._connected.is_set() and self._client is not None:
            return self._client
        self._attempted.clear()
        self._wake.set()
        waits = [
            asyncio.ensure_future(self._connected.wait()),
            asyncio.ensure_future(self._attempted.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if self._connected.is_set() and self._client is not None:
            return self._client
        raise IntegrationError(
            self.last_error
            or f"The OpenVPN management interface did not answer within {self.timeout:g} s"
        )

    def _needed(self) -> bool:
        return bool(self._blocked) or self.hold or self.gatekeeper

    async def _run(self) -> None:
        delay = self.backoff[0]
        while True:
            self._wake.clear()
            if not self._needed():
                await self._wake.wait()
                continue
            try:
                client = await self._connect()
            except IntegrationError as exc:
                self.last_error = str(exc)
                self._attempted.set()
                log.warning("OpenVPN guard: %s; retrying in %.1f s", exc, delay)
                await self._pause(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            try:
                await client.command("log on")
                self._client = client
                self._connected.set()
                self._attempted.set()
                delay = self.backoff[0]
                await self._watch(client)
                continue  # nothing left to guard: the interface was let go
            except IntegrationError as exc:
                self.last_error = str(exc)
                log.warning("OpenVPN guard lost the management interface: %s", exc)
            except Exception:  # a bug must not end the guard silently
                log.exception("OpenVPN guard failed; restarting it")
            finally:
                self._connected.clear()
                self._client = None
                self._attempted.set()
                await client.close()
            await self._pause(delay)
            delay = min(delay * 2, self.backoff[1])

    async def _pause(self, seconds: float) -> None:
        """Wait before the next attempt, cut short when a name is blocked or unblocked."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _watch(self, client: ManagementClient) -> None:
        """Enforce the blocks on one connection until nothing needs guarding."""
        loop = asyncio.get_running_loop()
        await self._sweep(client)
        next_sweep = loop.time() + self.poll_interval
        request: tuple[str, str, str] | None = None  # an auth request being read
        common_name = ""
        while True:
            self._wake.clear()
            if not self._needed():
                return
            line = await self._next(client, max(0.0, next_sweep - loop.time()))
            if line is None:
                if self._sweep_soon or loop.time() >= next_sweep:
                    await self._sweep(client)
                    next_sweep = loop.time() + self.poll_interval
                continue
            if found := _AUTH_REQUEST.match(line):
                self.gatekeeper = True
                request, common_name = (found.group(1), found.group(2), found.group(3)), ""
            elif line.startswith(">CLIENT:ENV,common_name="):
                common_name = line.removeprefix(">CLIENT:ENV,common_name=")
            elif line == ">CLIENT:ENV,END" and request is not None:
                await self._answer(client, request, common_name)
                request = None
            elif line.startswith(">LOG:") and any(name in line for name in self._blocked):
                next_sweep = min(next_sweep, self._last_sweep + _MIN_SWEEP_GAP)

    async def _next(self, client: ManagementClient, timeout: float) -> str | None:
        """The next notification, or None after ``timeout`` or when woken."""
        note = asyncio.ensure_future(client.notification())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({note, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not note.done():
                note.cancel()
        if note.done() and not note.cancelled():
            return note.result()  # raises IntegrationError once the connection closed
        return None

    async def _answer(
        self, client: ManagementClient, request: tuple[str, str, str], name: str
    ) -> None:
        """Deny a blocked name's connection, admit anyone else's."""
        kind, cid, kid = request
        try:
            if name in self._blocked:
                await client.command(f'client-deny {cid} {kid} "blocked by Fido"')
                self.denied += 1
                log.info("OpenVPN guard denied %s (%s) for common name %s", kind, cid, name)
            else:
                await client.command(f"client-auth-nt {cid} {kid}")
        except ManagementError as exc:  # the client left meanwhile
            log.info("OpenVPN guard: %s", exc)

    async def _sweep(self, client: ManagementClient) -> None:
        """End every listed session of a blocked name."""
        self._last_sweep = asyncio.get_running_loop().time()
        self._sweep_soon = False
        listed = {session.common_name for session in await client.status()}
        for name in sorted(listed & self._blocked):
            try:
                ended = await client.kill(name)
            except ManagementError as exc:
                log.warning("OpenVPN guard could not end %s's session: %s", name, exc)
                continue
            if ended:
                self._swept[name] = self._swept.get(name, 0) + ended
                log.info("OpenVPN guard ended %d new session(s) of blocked %s", ended, name)
