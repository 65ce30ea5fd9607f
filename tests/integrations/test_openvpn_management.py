"""The OpenVPN management client and the session guard.

Against a real OpenVPN server (``tests/fixtures/openvpn.py``) where it can show the case,
and against a tiny fake speaking the documented protocol (OpenVPN's management-notes.txt)
for what a real server will not produce on demand: the older ``status 3`` columns,
notifications in the middle of an answer, a dropped connection, silence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Self

import pytest
from pydantic import SecretStr

from integrations.openvpn import (
    ManagementClient,
    ManagementError,
    SessionGuard,
    parse_status,
    validate_common_name,
)
from integrations.openvpn.protocol import NEW_COLUMNS, OLD_COLUMNS, InvalidCommonName
from pipeline.errors import InputError, IntegrationError
from tests.fixtures import openvpn as fixtures
from tests.fixtures.openvpn import (
    OpenVPNServer,
    eventually,
    start_openvpn,
)
from tests.fixtures.servers import free_port

# the fixtures, found by pytest under these names
openvpn_server = fixtures.openvpn_server
openvpn = fixtures.openvpn

KILLED = "SUCCESS: common name '{}' found, 1 client(s) killed"
CLOSE = "<close>"  # in a fake's answer: hang up there


class FakeManagement:
    """Answers each command from ``answers`` (command → lines; unknown ones get OpenVPN's
    ERROR), optionally behind a password prompt, or stays silent after accepting."""

    def __init__(
        self,
        answers: dict[str, list[str]] | None = None,
        *,
        password: str | None = None,
        silent: bool = False,
    ) -> None:
        self.answers = answers or {}
        self.password = password
        self.silent = silent
        self.received: list[str] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self.drop()
        if self._handlers:  # closed connections end them; wait so none is cut off
            await asyncio.wait(self._handlers, timeout=2)
        await self._server.wait_closed()

    def respond(self, command: str) -> list[str]:
        default = ["ERROR: unknown command, enter 'help' for more options"]
        return self.answers.get(command, default)

    def drop(self) -> None:
        """Close every connection, as a restarting OpenVPN would."""
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    def push(self, *lines: str) -> None:
        """Send real-time notifications to every connected client."""
        for writer in self.writers:
            writer.write("".join(f"{line}\r\n" for line in lines).encode())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        self.connections += 1
        self.writers.append(writer)
        if self.silent:
            await reader.read()
            return
        if self.password is not None:
            writer.write(b"ENTER PASSWORD:")
            if (await reader.readline()).decode().strip() != self.password:
                writer.write(b"ENTER PASSWORD:")  # what OpenVPN does; it never says ERROR
                await writer.drain()
                writer.close()
                return
            writer.write(b"SUCCESS: password is correct\r\n")
        writer.write(b">INFO:OpenVPN Management Interface Version 5 -- type 'help'\r\n")
        while line := await reader.readline():
            command = line.decode().rstrip("\r\n")
            self.received.append(command)
            for answer in self.respond(command):
                if answer == CLOSE:
                    writer.close()
                    return
                writer.write(f"{answer}\r\n".encode())
        writer.close()


def status_lines(columns: tuple[str, ...], *rows: tuple[str, ...]) -> list[str]:
    """A ``status 3`` answer as OpenVPN prints it (tab-separated, ending with END)."""
    return [
        "TITLE\tOpenVPN 2.x",
        "TIME\t2026-01-01 10:00:00\t1767261600",
        "\t".join(("HEADER", "CLIENT_LIST", *columns)),
        *("\t".join(("CLIENT_LIST", *row)) for row in rows),
        "HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref",
        "GLOBAL_STATS\tMax bcast/mcast queue length\t0",
        "END",
    ]


NEW_ROW = ("jdoe", "198.51.100.7:50123", "10.8.0.6", "fd00::6", "2035", "2149",
           "2026-01-01 09:59:00", "1767261540", "UNDEF", "7", "3", "AES-256-GCM")  # fmt: skip
OLD_ROW = ("jdoe", "198.51.100.7:50123", "10.8.0.6", "2035", "2149",
           "2026-01-01 09:59:00", "1767261540", "jdoe")  # fmt: skip


# -- pure parsing and validation ----------------------------------------------------


def test_status_reads_the_newer_columns() -> None:
    (session,) = parse_status(status_lines(NEW_COLUMNS, NEW_ROW))
    assert session.common_name == "jdoe" and session.real_address == "198.51.100.7:50123"
    assert session.virtual_address == "10.8.0.6" and session.virtual_ipv6_address == "fd00::6"
    assert (session.bytes_received, session.bytes_sent) == (2035, 2149)
    assert session.connected_since == 1767261540 and session.username == "UNDEF"
    assert (session.client_id, session.peer_id, session.cipher) == (7, 3, "AES-256-GCM")
    assert session.established


def test_status_reads_the_older_columns_with_or_without_header() -> None:
    with_header = parse_status(status_lines(OLD_COLUMNS, OLD_ROW))
    without = parse_status(["\t".join(("CLIENT_LIST", *OLD_ROW)), "END"])
    for (session,) in (with_header, without):
        assert session.virtual_address == "10.8.0.6" and session.virtual_ipv6_address == ""
        assert session.bytes_sent == 2149 and session.connected_since == 1767261540
        assert session.username == "jdoe" and session.client_id is None


def test_status_keeps_clients_still_in_their_handshake() -> None:
    row = ("UNDEF", "127.0.0.1:4000", "", "", "0", "0", "", "", "UNDEF", "9", "0", "")
    (session,) = parse_status(status_lines(NEW_COLUMNS, row))
    assert session.common_name == "UNDEF" and not session.established


@pytest.mark.parametrize(
    "name", ["jdoe", "j.doe", "j_doe-2", "jdoe@corp.example", "a+b", "Jürgen", "Δημήτρης", "山田"]
)
def test_common_names_that_are_accepted(name: str) -> None:
    assert validate_common_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "is empty"),
        ("jdoe\nsignal SIGTERM", "line break"),
        ("jdoe\r", "line break"),
        ("jdoe\x00", "U+0000"),
        ("jdoe\u200b", "U+200B"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("../etc/passwd", "path separator"),
        ("a..b", "'..'"),
        (".hidden", "starts with '.'"),
        ("j doe", "' '"),
        ('j"doe', "'\"'"),
        ("jdoe:1194", "':'"),
        ("UNDEF", "not yet identified"),
        ("x" * 65, "64 bytes"),
        ("ü" * 33, "64 bytes"),
    ],
)
def test_common_names_that_are_refused(name: str, why: str) -> None:
    with pytest.raises(InvalidCommonName, match="common name") as caught:
        validate_common_name(name)
    assert why in str(caught.value)
    assert isinstance(caught.value, InputError)


# -- the client against the fake ----------------------------------------------------


async def test_notifications_between_answer_lines_are_set_aside() -> None:
    lines = status_lines(NEW_COLUMNS, NEW_ROW)
    interleaved = [">LOG:1767261600,I,first", *lines[:3], ">CLIENT:ESTABLISHED,7", *lines[3:]]
    answers = {"status 3": interleaved, "kill jdoe": [">LOG:1,I,x", KILLED.format("jdoe")]}
    async with FakeManagement(answers) as fake:
        async with await ManagementClient.connect("127.0.0.1", fake.port, timeout=2) as client:
            sessions = await client.status()
            assert [s.common_name for s in sessions] == ["jdoe"]
            assert await client.kill("jdoe") == 1
            notes = [await client.notification() for _ in range(4)]
    assert notes[0].startswith(">INFO:OpenVPN Management Interface")
    assert notes[1:] == [">LOG:1767261600,I,first", ">CLIENT:ESTABLISHED,7", ">LOG:1,I,x"]
    assert fake.received == ["status 3", "kill jdoe"]


async def test_error_answers_become_integration_errors() -> None:
    answers = {"kill ghost": ["ERROR: common name 'ghost' not found"], "status 3": ["ERROR: no"]}
    async with FakeManagement(answers) as fake:
        async with await ManagementClient.connect("127.0.0.1", fake.port, timeout=2) as client:
            assert await client.kill("ghost") == 0  # nobody by that name: nothing to end
            with pytest.raises(ManagementError, match=r"refused 'status': no$"):
                await client.status()
            with pytest.raises(IntegrationError, match="refused 'bogus': unknown command"):
                await client.command("bogus")


async def test_a_command_is_one_line_and_a_name_is_checked_before_sending() -> None:
    async with FakeManagement({"pid": ["SUCCESS: pid=42"]}) as fake:
        async with await ManagementClient.connect("127.0.0.1", fake.port, timeout=2) as client:
            with pytest.raises(InputError, match="one line"):
                await client.command("status\nsignal SIGTERM")
            with pytest.raises(InvalidCommonName):
                await client.kill("jdoe\nsignal SIGTERM")
            assert await client.command("pid") == "pid=42"  # and the connection is fine
    assert fake.received == ["pid"]


async def test_a_connection_closed_mid_answer_is_an_error() -> None:
    async with FakeManagement({"status 3": ["TITLE\tx", "HEADER\tCLIENT_LIST", CLOSE]}) as fake:
        async with await ManagementClient.connect("127.0.0.1", fake.port, timeout=2) as client:
            with pytest.raises(IntegrationError, match="closed the connection"):
                await client.status()
            with pytest.raises(IntegrationError, match="closed the connection"):
                await client.command("pid")


async def test_password_prompt_answered_refused_or_missing() -> None:
    async with FakeManagement({"pid": ["SUCCESS: pid=42"]}, password="s3cret") as fake:
        good = SecretStr("s3cret")
        async with await ManagementClient.connect(
            "127.0.0.1", fake.port, password=good, timeout=2
        ) as client:
            assert await client.command("pid") == "pid=42"
        with pytest.raises(IntegrationError, match="refused the password") as wrong:
            await ManagementClient.connect(
                "127.0.0.1", fake.port, password=SecretStr("nope"), timeout=2
            )
        assert "nope" not in str(wrong.value)
        with pytest.raises(IntegrationError, match="asks for a password and none"):
            await ManagementClient.connect("127.0.0.1", fake.port, timeout=2)


async def test_refused_port_fails_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(IntegrationError, match="connection refused"):
        await ManagementClient.connect("127.0.0.1", free_port(), timeout=5)
    assert time.monotonic() - started < 1


async def test_silent_interface_times_out() -> None:
    async with FakeManagement(silent=True) as fake:
        started = time.monotonic()
        with pytest.raises(IntegrationError, match=r"did not answer within 0.3 s.*one client"):
            await ManagementClient.connect("127.0.0.1", fake.port, timeout=0.3)
        assert time.monotonic() - started < 1.5


async def test_a_command_left_unanswered_times_out_and_closes() -> None:
    async with FakeManagement({"status 3": ["TITLE\tno END follows"]}) as fake:
        client = await ManagementClient.connect("127.0.0.1", fake.port, timeout=0.3)
        with pytest.raises(IntegrationError, match="did not answer 'status' within 0.3 s"):
            await client.status()
        assert client.closed
        with pytest.raises(IntegrationError):
            await client.command("pid")


# -- the guard against the fake -----------------------------------------------------


class FakeVPN(FakeManagement):
    """A fake whose ``status 3`` lists ``listed`` and whose ``kill`` ends the name's
    sessions (a test "reconnects" a client by listing it again)."""

    def __init__(self, *listed: str) -> None:
        super().__init__()
        self.listed = list(listed)

    def respond(self, command: str) -> list[str]:
        if command == "log on":
            return ["SUCCESS: real-time log notification set to ON"]
        if command == "status 3":
            rows = [(name, "127.0.0.1:4000", "10.8.0.6", "", "1", "1", "", "1", "UNDEF",
                     "1", "1", "") for name in self.listed]  # fmt: skip
            return status_lines(NEW_COLUMNS, *rows)
        if command.startswith("kill "):
            name = command.removeprefix("kill ")
            if name not in self.listed:
                return [f"ERROR: common name '{name}' not found"]
            count = self.listed.count(name)
            self.listed = [listed for listed in self.listed if listed != name]
            return [f"SUCCESS: common name '{name}' found, {count} client(s) killed"]
        if command.startswith(("client-deny ", "client-auth-nt ")):
            return ["SUCCESS: client-auth command succeeded"]
        return super().respond(command)


def fake_guard(fake: FakeManagement, **kwargs: object) -> SessionGuard:
    async def connect() -> ManagementClient:
        return await ManagementClient.connect("127.0.0.1", fake.port, timeout=1)

    options: dict[str, object] = {"poll_interval": 0.1, "backoff": (0.05, 0.2), "timeout": 2}
    return SessionGuard(connect, **(options | kwargs))  # type: ignore[arg-type]


async def until(check: Callable[[], bool], message: str, timeout: float = 5) -> None:
    await eventually(check, timeout, message)


async def test_guard_reconnects_after_a_drop_and_keeps_killing() -> None:
    async with FakeVPN("jdoe", "alice") as fake:
        guard = fake_guard(fake, blocked=["jdoe"])
        await guard.start()
        try:
            await until(lambda: "kill jdoe" in fake.received, "the guard never swept")
            fake.drop()
            await until(lambda: fake.connections >= 2, "the guard did not reconnect")
            fake.listed.append("jdoe")  # jdoe came back while the guard was away
            await until(lambda: fake.received.count("kill jdoe") == 2, "no kill after")
        finally:
            await guard.stop()
    assert fake.listed == ["alice"] and "kill alice" not in fake.received
    assert fake.received[0] == "log on"
    assert guard.rekills == 2 and guard.blocked == {"jdoe"}


async def test_guard_sweeps_at_once_on_a_log_line_naming_a_blocked_user() -> None:
    async with FakeVPN() as fake:
        guard = fake_guard(fake, poll_interval=60)  # no timed sweep in this test
        try:
            assert await guard.block("jdoe") == 0
            fake.listed += ["alice", "jdoe"]
            fake.push(">LOG:1767261600,I,127.0.0.1:4001 [alice] Peer Connection Initiated")
            await asyncio.sleep(0.3)  # a line about someone else: no sweep
            assert fake.received.count("status 3") == 2  # the guard's first, block()'s
            fake.push(">LOG:1767261600,I,127.0.0.1:4002 [jdoe] Peer Connection Initiated")
            await until(lambda: "kill jdoe" in fake.received, "no sweep on the log line")
        finally:
            await guard.stop()
    assert guard.rekills == 1 and fake.listed == ["alice"]


async def test_guard_lets_the_interface_go_when_nothing_is_blocked() -> None:
    async with FakeVPN("jdoe", "jdoe") as fake:
        guard = fake_guard(fake)
        try:
            assert await guard.block("jdoe") == 2
            assert guard.connected and guard.rekills == 0
            assert await guard.unblock("jdoe") and not await guard.unblock("jdoe")
            await until(lambda: not guard.connected, "the guard kept the interface")
            fake.listed.append("jdoe")
            assert await guard.block("jdoe") == 1  # and takes it again when needed
        finally:
            await guard.stop()
    assert fake.connections == 2


async def test_guard_reconcile_follows_the_stored_names() -> None:
    """The leader hands the guard the names in force: new ones are swept at once (not at
    the next timed sweep), dropped ones let in, and with none left the interface is let go."""
    async with FakeVPN("jdoe", "alice", "bob") as fake:
        guard = fake_guard(fake, poll_interval=60)
        try:
            assert guard.reconcile([]) == (frozenset(), frozenset())
            await asyncio.sleep(0.2)
            assert not guard.connected and fake.connections == 0  # nothing to guard
            assert guard.reconcile(["jdoe"]) == ({"jdoe"}, frozenset())
            await until(lambda: "kill jdoe" in fake.received, "jdoe was not swept")
            guard.reconcile(["jdoe", "bob"])
            await until(lambda: "kill bob" in fake.received, "bob was not swept at once")
            assert guard.reconcile(["bob"]) == (frozenset(), {"jdoe"})
            assert guard.blocked == {"bob"}
            assert guard.reconcile([]) == (frozenset(), {"bob"})
            await until(lambda: not guard.connected, "the guard kept the interface")
        finally:
            await guard.stop()
    assert fake.listed == ["alice"] and "kill alice" not in fake.received


async def test_guard_reconcile_does_not_undo_what_this_process_just_did() -> None:
    """A list read before a click here was stored lags behind it: for LOCAL_GRACE seconds
    the click's block or unblock stands."""
    async with FakeVPN("jdoe") as fake:
        guard = fake_guard(fake)
        try:
            await guard.block("jdoe")
            assert guard.reconcile([]) == (frozenset(), frozenset())  # not stored yet
            assert guard.blocked == {"jdoe"}
            assert await guard.unblock("jdoe")
            assert guard.reconcile(["jdoe"]) == (frozenset(), frozenset())  # a stale list
            assert not guard.blocked
        finally:
            await guard.stop()


async def test_guard_block_fails_fast_when_the_interface_is_down() -> None:
    port = free_port()

    async def connect() -> ManagementClient:
        return await ManagementClient.connect("127.0.0.1", port, timeout=1)

    guard = SessionGuard(connect, backoff=(5, 5), timeout=5)
    started = time.monotonic()
    try:
        with pytest.raises(IntegrationError, match="connection refused"):
            await guard.block("jdoe")
    finally:
        await guard.stop()
    assert time.monotonic() - started < 1.5


async def test_guard_answers_client_auth_requests() -> None:
    """With --management-client-auth OpenVPN asks before admitting anyone."""
    async with FakeVPN() as fake:
        guard = fake_guard(fake)
        guard.reconcile(["jdoe"])  # the names in force, as stored
        try:
            await until(lambda: "status 3" in fake.received, "the guard never connected")
            for cid, name in (("5", "jdoe"), ("6", "alice")):
                fake.push(f">CLIENT:CONNECT,{cid},1", ">CLIENT:ENV,untrusted_ip=127.0.0.1",
                          f">CLIENT:ENV,common_name={name}", ">CLIENT:ENV,END")  # fmt: skip
            await until(lambda: "client-auth-nt 6 1" in fake.received, "alice not admitted")
            assert await guard.unblock("jdoe")
            await asyncio.sleep(0.3)
            assert guard.connected  # the server's gate: it stays
        finally:
            await guard.stop()
    assert 'client-deny 5 1 "blocked by Fido"' in fake.received
    assert guard.denied == 1 and guard.gatekeeper


# -- against a real OpenVPN server --------------------------------------------------


async def test_real_server_status_kill_and_password(openvpn: OpenVPNServer) -> None:
    jdoe = await openvpn.connect("mgmt-jdoe")
    password = SecretStr(openvpn.password or "")
    port = openvpn.management_port
    async with await ManagementClient.connect("127.0.0.1", port, password=password) as client:
        (session,) = [s for s in await client.status() if s.common_name == "mgmt-jdoe"]
        assert session.established and session.client_id is not None
        assert session.cipher and session.real_address.startswith("127.0.0.1:")
        assert await client.kill("mgmt-jdoe") == 1
        assert await client.kill("mgmt-nobody") == 0
    with pytest.raises(IntegrationError, match="refused the password"):
        await ManagementClient.connect("127.0.0.1", port, password=SecretStr("wrong"))
    with pytest.raises(IntegrationError, match="asks for a password and none"):
        await ManagementClient.connect("127.0.0.1", port)
    # the kill ended the tunnel (the client, with nothing to stop it, comes back), and the
    # refused logins left the interface serving the next client
    await until(lambda: jdoe.connections == 2, "the client was not disconnected", timeout=15)
    await until(lambda: bool(openvpn.established("mgmt-jdoe")), "not listed again")


async def test_real_server_guard_as_gate_with_client_auth() -> None:
    """--management-client-auth: the guard denies the blocked name before its tunnel
    exists and admits the others."""
    with start_openvpn(client_auth=True) as server:

        async def connect() -> ManagementClient:
            return await ManagementClient.connect(
                "127.0.0.1", server.management_port, password=SecretStr(server.password or "")
            )

        guard = SessionGuard(connect, blocked=["gate-jdoe"], poll_interval=0.5)
        await guard.start()
        try:
            await until(lambda: guard.connected, "the guard did not connect")
            jdoe = server.start_client("gate-jdoe")
            alice = server.start_client("gate-alice")
            await until(lambda: alice.connections == 1, "alice was not admitted", timeout=15)
            # the client retries every few seconds, slower on a busy machine
            await until(lambda: guard.denied >= 2, "jdoe was not denied twice", timeout=40)
            assert jdoe.running and jdoe.attempts >= 2 and jdoe.connections == 0
        finally:
            await guard.stop()
        assert {s.common_name for s in server.sessions() if s.established} == {"gate-alice"}
