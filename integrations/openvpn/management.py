"""An asyncio client for OpenVPN's management interface (OpenVPN's doc/management-notes.txt).

The interface is a line protocol on a TCP port that OpenVPN opens with ``--management HOST
PORT [pwfile]``. What shapes this client:

* With a password file OpenVPN first sends ``ENTER PASSWORD:`` without a line break; a wrong
  password is answered by the same prompt again (and the socket closed after three tries),
  never by an ``ERROR:`` line, so the prompt is read up to its colon, not line by line.
* A command is answered by one ``SUCCESS: …`` or ``ERROR: …`` line, or — ``status``,
  ``help`` — by lines ending with ``END``.
* Real-time notifications (lines starting with ``>``: ``>INFO``, ``>LOG``, ``>CLIENT`` …) can
  arrive at any moment, even between the lines of an answer. One reader task therefore reads
  every line and routes notifications to a queue of their own, answers to the command waiting.
* OpenVPN serves ONE management client at a time; a second connection is accepted by the
  kernel and then left unanswered until the first one leaves. A connection that never
  answers is therefore a busy interface as often as a broken one, and the errors say so.

Every failure — refused, timed out, closed, an ``ERROR:`` answer — is an IntegrationError
with a sentence for people. Common names are validated (``protocol.validate_common_name``)
before they are sent; the password is sent once and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from types import TracebackType

from pydantic import SecretStr

from integrations.openvpn.protocol import (
    ClientSession,
    InvalidCommonName,
    common_name_problem,
    parse_status,
    validate_common_name,
)
from pipeline.errors import InputError, IntegrationError

__all__ = [
    "ClientSession",
    "InvalidCommonName",
    "ManagementBusy",
    "ManagementClient",
    "ManagementEndpoint",
    "ManagementError",
    "common_name_problem",
    "end_sessions",
    "parse_status",
    "validate_common_name",
]

log = logging.getLogger(__name__)

_LINE_LIMIT = 1 << 20  # one status line per client: far below this
_NOTIFICATION_BACKLOG = 1000  # kept for whoever reads them; the oldest go first
_PROMPT = b"ENTER PASSWORD:"
_KILLED = re.compile(r"(\d+) client\(s\) killed")


class ManagementError(IntegrationError):
    """OpenVPN answered ``ERROR: …``; ``answer`` is its text."""

    def __init__(self, message: str, *, answer: str) -> None:
        super().__init__(message)
        self.answer = answer


class ManagementBusy(IntegrationError):
    """The interface took the connection and said nothing: another client holds it (or
    the server hangs; the two look alike)."""


class ManagementClient:
    """One connection to a management interface. Open it with :meth:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        address: str,
        timeout: float,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._reader, self._writer = reader, writer
        self._answers: asyncio.Queue[str | None] = asyncio.Queue()
        self._notifications: asyncio.Queue[str | None] = asyncio.Queue(_NOTIFICATION_BACKLOG)
        self._lock = asyncio.Lock()
        self._closed: str | None = None  # why the connection ended
        self._reading = asyncio.create_task(self._read_lines())

    @classmethod
    async def connect(
        cls, host: str, port: int, *, password: SecretStr | None = None, timeout: float = 5.0
    ) -> ManagementClient:
        """Connect, answer the password prompt when there is one, and return the client."""
        address = f"{host}:{port}"
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=_LINE_LIMIT)
                banner = await _handshake(reader, writer, password, address)
        except TimeoutError:
            _close_quietly(writer)
            # connected but not spoken to: how OpenVPN treats a second client
            error = IntegrationError if writer is None else ManagementBusy
            raise error(
                f"The OpenVPN management interface at {address} did not answer within "
                f"{timeout:g} s (it serves one client at a time: is another program "
                "connected to it?)"
            ) from None
        except ConnectionRefusedError:
            raise IntegrationError(
                f"Cannot reach the OpenVPN management interface at {address}: connection "
                "refused (is OpenVPN running with that --management address?)"
            ) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            _close_quietly(writer)
            raise IntegrationError(
                f"The OpenVPN management interface at {address} failed: {_reason(exc)}"
            ) from None
        except BaseException:
            _close_quietly(writer)
            raise
        client = cls(reader, writer, address=address, timeout=timeout)
        if banner:
            client._route(banner)
        return client

    async def __aenter__(self) -> ManagementClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def close(self) -> None:
        """Close the connection (idempotent); OpenVPN then serves its next client."""
        if self._closed is None:
            self._closed = "was closed by Fido"
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        _close_quietly(self._writer)
        with contextlib.suppress(OSError, RuntimeError):
            await self._writer.wait_closed()

    async def command(self, command: str) -> str:
        """Send a one-line command; the text after ``SUCCESS:``. ManagementError on
        ``ERROR:``, IntegrationError when the connection fails or stays silent."""
        return (await self._request(command, block=False))[0]

    async def command_block(self, command: str) -> list[str]:
        """Send a command answered by several lines ending with ``END``; those lines."""
        return await self._request(command, block=True)

    async def status(self) -> list[ClientSession]:
        """Every client instance the server holds, from ``status 3``."""
        return parse_status(await self.command_block("status 3"))

    async def kill(self, common_name: str) -> int:
        """End every session of ``common_name``; how many OpenVPN ended (0: none found)."""
        name = validate_common_name(common_name)
        try:
            answer = await self.command(f"kill {name}")
        except ManagementError as exc:
            if "not found" in exc.answer:
                return 0
            raise
        found = _KILLED.search(answer)
        return int(found.group(1)) if found else 1

    async def notification(self) -> str:
        """The next real-time notification line (">…"); IntegrationError once closed."""
        line = await self._notifications.get()
        if line is None:
            self._notifications.put_nowait(None)  # every later call fails the same way
            raise self._closed_error()
        return line

    async def _request(self, command: str, *, block: bool) -> list[str]:
        if any(unicodedata.category(char)[0] == "C" for char in command):
            raise InputError("a management command must be one line without control characters")
        verb = command.split(" ", 1)[0]
        async with self._lock:
            if self._closed is not None:
                raise self._closed_error()
            try:
                async with asyncio.timeout(self.timeout):
                    self._writer.write(command.encode() + b"\n")
                    await self._writer.drain()
                    return await (self._read_block(verb) if block else self._read_answer(verb))
            except TimeoutError:
                await self._abandon(f"did not answer {verb!r} within {self.timeout:g} s")
                raise self._closed_error() from None
            except OSError as exc:
                await self._abandon(f"failed: {_reason(exc)}")
                raise self._closed_error() from None

    async def _read_answer(self, verb: str) -> list[str]:
        while True:
            line = await self._answer()
            if line.startswith("SUCCESS:"):
                return [line.removeprefix("SUCCESS:").strip()]
            if line.startswith("ERROR:"):
                raise self._refused(verb, line)
            log.debug("management %s: skipped %r while waiting for an answer", self.address, line)

    async def _read_block(self, verb: str) -> list[str]:
        lines: list[str] = []
        while (line := await self._answer()) != "END":
            if not lines and line.startswith("ERROR:"):
                raise self._refused(verb, line)
            lines.append(line)
        return lines

    async def _answer(self) -> str:
        line = await self._answers.get()
        if line is None:
            raise self._closed_error()
        return line

    def _refused(self, verb: str, line: str) -> ManagementError:
        answer = line.removeprefix("ERROR:").strip()
        return ManagementError(
            f"OpenVPN at {self.address} refused {verb!r}: {answer}", answer=answer
        )

    def _closed_error(self) -> IntegrationError:
        return IntegrationError(
            f"The OpenVPN management interface at {self.address} {self._closed or 'closed'}"
        )

    async def _abandon(self, reason: str) -> None:
        """After a timeout or a socket error the stream's position is unknown: close it."""
        self._closed = reason
        await self.close()

    async def _read_lines(self) -> None:
        reason = "closed the connection"
        try:
            while raw := await self._reader.readline():
                if not raw.endswith(b"\n"):
                    break  # the connection ended in the middle of a line
                self._route(raw.decode("utf-8", "replace").rstrip("\r\n"))
        except ValueError:
            reason = f"sent a line longer than {_LINE_LIMIT} bytes"
        except OSError as exc:
            reason = f"failed: {_reason(exc)}"
        finally:
            if self._closed is None:
                self._closed = reason
            self._answers.put_nowait(None)
            self._notify(None)

    def _route(self, line: str) -> None:
        if line.startswith(">"):
            self._notify(line)
        else:
            self._answers.put_nowait(line)

    def _notify(self, line: str | None) -> None:
        if self._notifications.full():
            self._notifications.get_nowait()  # nobody reads them: keep the newest
        self._notifications.put_nowait(line)


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    password: SecretStr | None,
    address: str,
) -> str | None:
    """Answer the password prompt if OpenVPN shows one; the first notification line
    (the ``>INFO`` banner) when it shows none."""
    first = await reader.readuntil(b":")
    if not first.endswith(_PROMPT):
        if not first.startswith(b">"):
            raise IntegrationError(
                f"{address} does not answer like an OpenVPN management interface "
                f"(it said {first[:40]!r})"
            )
        return (first + await reader.readline()).decode("utf-8", "replace").rstrip("\r\n")
    if password is None:
        raise IntegrationError(
            f"The OpenVPN management interface at {address} asks for a password and none "
            "is configured (set password_env)"
        )
    secret = password.get_secret_value()
    if any(char in secret for char in "\r\n\0"):
        raise IntegrationError("The management password holds a line break or NUL")
    writer.write(secret.encode() + b"\n")
    await writer.drain()
    try:
        answer = await reader.readuntil(b":")
    except asyncio.IncompleteReadError:
        answer = b""
    if answer.strip() != b"SUCCESS:":
        raise IntegrationError(
            f"The OpenVPN management interface at {address} refused the password "
            "(the one in password_env)"
        )
    await reader.readline()  # " password is correct"
    return None


def _close_quietly(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "it closed the connection"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "it sent no recognisable prompt"
    return (
        exc.strerror
        if isinstance(exc, OSError) and exc.strerror
        else str(exc) or type(exc).__name__
    )


async def end_sessions(client: ManagementClient, common_name: str) -> int:
    """Read ``status 3`` and kill every session of ``common_name``; how many ended.

    Reading first means a name with no session is never sent in a kill."""
    name = validate_common_name(common_name)
    if not any(session.common_name == name for session in await client.status()):
        return 0
    return await client.kill(name)


@dataclass(frozen=True)
class ManagementEndpoint:
    """Where one server's management interface listens, and how to log in to it."""

    host: str
    port: int
    password: SecretStr | None = None
    timeout: float = 5.0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    async def connect(self) -> ManagementClient:
        return await ManagementClient.connect(
            self.host, self.port, password=self.password, timeout=self.timeout
        )
