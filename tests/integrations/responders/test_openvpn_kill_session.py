"""openvpn_kill_session against a real OpenVPN server with real clients on loopback.

Each test uses its own common names on the module's server (``tests/fixtures/openvpn.py``);
the clients retry every second, so "kept out" is observed, not assumed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from integrations.responders.openvpn_kill_session import FIDO_LINES, OpenVPNKillSession
from pipeline import act
from pipeline.db import Database
from pipeline.errors import ConfigError, ResponderError
from pipeline.leader import HOLD_EVERY, HeldContainments, Leadership
from pipeline.models import Action
from pipeline.plugins import Context, HoldsContainment, Impact, Responder, responders
from pipeline.policy import ActionPolicy, Policy
from tests.fixtures import openvpn as fixtures
from tests.fixtures.openvpn import (
    OpenVPNClient,
    OpenVPNServer,
    eventually,
    start_openvpn,
    throughout,
)
from tests.fixtures.servers import free_port

# the fixtures, found by pytest under these names
openvpn_server = fixtures.openvpn_server
openvpn = fixtures.openvpn

PASSWORD_ENV = "FIDO_TEST_OPENVPN_PASSWORD"
NAME = "openvpn_kill_session"


def build(
    server: OpenVPNServer, *, password: str | None = None, **changes: Any
) -> OpenVPNKillSession:
    """The responder as the project builds it: Options validated, then ``build`` with the
    password in the environment (``password`` puts another one there)."""
    values: dict[str, Any] = {
        "management_port": server.management_port,
        "password_env": PASSWORD_ENV,
        "ccd_dir": str(server.ccd_dir),
        "timeout": 5,
    }
    options = OpenVPNKillSession.Options.model_validate(values | changes)
    context = Context(environ={PASSWORD_ENV: password or server.password or ""})
    return OpenVPNKillSession.build(options, context)


@asynccontextmanager
async def guarded(
    server: OpenVPNServer, *, leading: bool = True, **changes: Any
) -> AsyncIterator[OpenVPNKillSession]:
    """The responder without a client-config-dir, as on Fido's leading replica (its guard
    runs there) unless not ``leading``; the guard is stopped afterwards."""
    responder = build(server, ccd_dir=None, **changes)
    if leading:
        await responder.hold([])
    try:
        yield responder
    finally:
        await responder.release()


async def connect_all(server: OpenVPNServer, *names: str) -> list[OpenVPNClient]:
    """Start a client per name (at once) and wait until the server lists every tunnel."""
    clients = [server.start_client(name) for name in names]

    def all_up() -> bool:
        up = [s.common_name for s in server.sessions() if s.established]
        return all(up.count(name) >= names.count(name) for name in names)

    await eventually(all_up, 20, f"not all of {names} connected")
    return clients


def ended_by_kill(server: OpenVPNServer, name: str) -> int:
    """Sessions of ``name`` the server says were ended from outside (the kill's SIGTERM).

    Its log names a client instance "ip:port" until the tunnel is set up and "name/ip:port"
    after, so both are counted, for the addresses whose certificate carried ``name``."""
    lines = [line.split(" ", 3) for line in server.log_text().splitlines()]
    addresses = {
        fields[2] for fields in lines if fields[-1].endswith(f"VERIFY OK: depth=0, CN={name}")
    }
    instances = addresses | {f"{name}/{address}" for address in addresses}
    return sum(
        1 for fields in lines if fields[2:3] and fields[2] in instances and
        fields[-1].startswith("SIGTERM[soft,]")
    )  # fmt: skip


# -- the plugin and its options -----------------------------------------------------


def test_registered_with_its_options_and_metadata(openvpn: OpenVPNServer) -> None:
    assert responders.get("openvpn_kill_session") is OpenVPNKillSession
    responder = build(openvpn)
    assert isinstance(responder, Responder)
    assert (responder.target_kind, responder.label) == ("user", "end VPN session of")
    assert OpenVPNKillSession.reversible is True
    assert OpenVPNKillSession.impact is Impact.low  # one way in, and Undo lets them back
    assert responder.plan("jdoe", {"display_name": "John Doe", "department": "Eng"}).startswith(
        "End the VPN sessions of jdoe (John Doe, Eng) (common name jdoe)"
    )
    assert responder.guard is None  # a client-config-dir needs no guard
    assert build(openvpn, ccd_dir=None).guard is not None


@pytest.mark.parametrize(
    "template",
    ["{user}", "{}", "{0}", "{account!r}", "{account:>9}", "{account.upper}", "{account[0]}",
     "static-name", "../{account}", "{account}/x", "{account} x", "{{account}}", "{account"],
)  # fmt: skip
def test_options_refuse_bad_common_name_templates(template: str) -> None:
    with pytest.raises(ValidationError, match="common_name"):
        OpenVPNKillSession.Options(management_port=7505, common_name=template)


@pytest.mark.parametrize(
    "changes",
    [
        {"unknown": 1},
        {"management_port": 0},
        {"management_port": 65536},
        {"ccd_dir": "relative/ccd"},
        {"timeout": 0},
        {"password_env": "NOT-A-NAME"},
        {"client_auth": True, "ccd_dir": "/etc/openvpn/ccd"},
    ],
)
def test_options_refuse_unknown_keys_and_bad_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OpenVPNKillSession.Options.model_validate({"management_port": 7505} | changes)


def test_options_defaults_and_the_password_from_the_environment() -> None:
    options = OpenVPNKillSession.Options(management_port=7505, password_env="VPN_PW")
    assert (options.management_host, options.common_name, options.ccd_dir) == (
        "127.0.0.1", "{account}", None,
    )  # fmt: skip
    assert options.timeout == 5
    responder = OpenVPNKillSession.build(options, Context(environ={"VPN_PW": "pw-1"}))
    assert responder.endpoint.password is not None
    assert responder.endpoint.password.get_secret_value() == "pw-1"
    assert "pw-1" not in repr(responder.endpoint)
    with pytest.raises(ConfigError, match="VPN_PW is not set"):
        OpenVPNKillSession.build(options, Context(environ={}))


def test_plan_names_user_common_name_and_server() -> None:
    options = OpenVPNKillSession.Options(management_port=7505)
    responder = OpenVPNKillSession.build(options, Context())
    assert responder.plan("jdoe") == (
        "End the VPN sessions of jdoe (common name jdoe) on 127.0.0.1:7505 "
        "and keep them out until undone"
    )
    options = OpenVPNKillSession.Options(management_port=7505, common_name="{account}@vpn")
    responder = OpenVPNKillSession.build(options, Context())
    assert "of CORP\\jdoe (common name jdoe@vpn)" in responder.plan("CORP\\jdoe")
    assert responder.plan("a/b").startswith("Refused to end the VPN sessions of 'a/b'")


# -- with a client-config-dir -------------------------------------------------------


async def test_ends_every_session_and_keeps_the_user_out_until_undone(
    openvpn: OpenVPNServer,
) -> None:
    jdoe_1, jdoe_2, alice = await connect_all(openvpn, "ccd-jdoe", "ccd-jdoe", "ccd-alice")
    (alice_session,) = openvpn.established("ccd-alice")
    responder = build(openvpn)

    done = await responder.execute("ccd-jdoe")

    assert done.summary == (
        "Ended 2 VPN sessions of ccd-jdoe (common name ccd-jdoe) and disabled ccd-jdoe in "
        f"{openvpn.ccd_dir}"
    )
    assert not [s for s in openvpn.sessions() if s.common_name == "ccd-jdoe"]
    path = openvpn.ccd_dir / "ccd-jdoe"
    assert path.read_bytes() == FIDO_LINES and path.stat().st_mode & 0o777 == 0o644
    attempts = jdoe_1.attempts + jdoe_2.attempts
    # both clients keep coming back every second and are refused every time
    await throughout(
        lambda: not openvpn.established("ccd-jdoe"), 4, "ccd-jdoe got a tunnel while disabled"
    )
    assert jdoe_1.running and jdoe_2.running
    assert jdoe_1.attempts + jdoe_2.attempts >= attempts + 3
    assert "AUTH_FAILED" in jdoe_1.text() and jdoe_1.connections == 1
    assert openvpn.established("ccd-alice") == [alice_session] and alice.connections == 1

    undone = await responder.undo("ccd-jdoe", done.undo_data)

    assert undone.summary == f"Re-enabled ccd-jdoe: removed {path}, which Fido had written"
    assert not path.exists()
    await eventually(lambda: len(openvpn.established("ccd-jdoe")) == 2, 15, "not back")


async def test_user_without_a_session_cannot_connect_until_undone(openvpn: OpenVPNServer) -> None:
    """Also shows a non-ASCII common name working end to end (status, kill, file name)."""
    name = "ccd-jürgen"
    responder = build(openvpn)

    done = await responder.execute(name)

    assert done.summary == (
        f"{name} had no VPN session; disabled {name} in {openvpn.ccd_dir} so they cannot connect"
    )
    client = openvpn.start_client(name)
    await eventually(lambda: client.text().count("AUTH_FAILED") >= 2, 15, "not refused twice")
    assert not openvpn.established(name) and client.connections == 0
    await responder.undo(name, done.undo_data)
    await eventually(lambda: bool(openvpn.established(name)), 15, f"{name} did not connect")


async def test_an_existing_client_config_is_restored_byte_for_byte(openvpn: OpenVPNServer) -> None:
    original = (
        b"# by hand\r\nifconfig-push 10.213.77.50 255.255.255.0\n"
        b'push "route 10.1.0.0 255.255.0.0"\n# caf\xc3\xa9, and no line break at the end'
    )
    path = openvpn.ccd_dir / "ccd-carol"
    path.write_bytes(original)
    path.chmod(0o640)
    responder = build(openvpn)

    done = await responder.execute("ccd-carol")

    assert path.read_bytes() == original + b"\n" + FIDO_LINES
    assert path.stat().st_mode & 0o777 == 0o640
    assert not [p.name for p in openvpn.ccd_dir.iterdir() if p.name != "ccd-carol"]
    undone = await responder.undo("ccd-carol", done.undo_data)
    assert undone.summary == f"Re-enabled ccd-carol: put {path} back exactly as it was before"
    assert path.read_bytes() == original and path.stat().st_mode & 0o777 == 0o640


async def test_a_file_that_already_disables_is_left_alone(openvpn: OpenVPNServer) -> None:
    path = openvpn.ccd_dir / "ccd-dave"
    path.write_bytes(b"disable\n")
    responder = build(openvpn)
    done = await responder.execute("ccd-dave")
    assert "ccd-dave was already disabled in" in done.summary and "left unchanged" in done.summary
    undone = await responder.undo("ccd-dave", done.undo_data)
    assert undone.summary.startswith("Left ccd-dave disabled in")
    assert path.read_bytes() == b"disable\n"


async def test_undo_after_someone_edited_the_file_removes_only_fidos_lines(
    openvpn: OpenVPNServer,
) -> None:
    path = openvpn.ccd_dir / "ccd-erin"
    responder = build(openvpn)
    done = await responder.execute("ccd-erin")
    with path.open("ab") as file:
        file.write(b"push-reset\n")
    undone = await responder.undo("ccd-erin", done.undo_data)
    assert "was changed since" in undone.summary
    assert path.read_bytes() == b"push-reset\n"


async def test_undo_writes_only_inside_ccd_dir(openvpn: OpenVPNServer, tmp_path: Path) -> None:
    """Undo data comes back from the database: Fido still checks where it writes."""
    responder = build(openvpn)
    done = await responder.execute("ccd-gina")
    elsewhere = tmp_path / "ccd-gina"
    elsewhere.write_bytes(FIDO_LINES)
    with pytest.raises(ResponderError, match="outside ccd_dir"):
        await responder.undo("ccd-gina", done.undo_data | {"path": str(elsewhere)})
    with pytest.raises(ResponderError, match="bad undo data"):
        await responder.undo("ccd-gina", done.undo_data | {"common_name": "../ccd-gina"})
    assert elsewhere.read_bytes() == FIDO_LINES
    assert (openvpn.ccd_dir / "ccd-gina").read_bytes() == FIDO_LINES


async def test_a_missing_or_unusable_ccd_dir_is_refused(
    openvpn: OpenVPNServer, tmp_path: Path
) -> None:
    for directory, why in (
        (tmp_path / "missing", "does not exist or is not a directory"),
        (openvpn.log, "does not exist or is not a directory"),
    ):
        with pytest.raises(ResponderError, match=why):
            await build(openvpn, ccd_dir=str(directory)).execute("ccd-frank")
    with read_only_directory(tmp_path / "ro") as directory:
        with pytest.raises(ResponderError, match="is not writable by Fido"):
            await build(openvpn, ccd_dir=str(directory)).execute("ccd-frank")


@contextmanager
def read_only_directory(path: Path) -> Iterator[Path]:
    """A directory Fido cannot write: mode 0555, or as root a read-only bind mount."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", path, path], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only directory as root: {mounted.stderr!r}")
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


# -- failures of the management interface -------------------------------------------


@pytest.mark.parametrize("mode", ["ccd", "guard"])
async def test_management_password_missing_or_wrong(openvpn: OpenVPNServer, mode: str) -> None:
    ccd: dict[str, Any] = {} if mode == "ccd" else {"ccd_dir": None}
    for responder, why in (
        (build(openvpn, password_env=None, **ccd), "asks for a password and none is configured"),
        (build(openvpn, password="wrong-pw", **ccd), "refused the password"),
    ):
        try:
            with pytest.raises(ResponderError, match=why) as caught:
                await responder.execute("pw-jdoe")
        finally:
            if responder.guard is not None:
                await responder.guard.stop()
        assert "wrong-pw" not in str(caught.value)
        assert (openvpn.password or "-") not in str(caught.value)
    assert not list(openvpn.ccd_dir.iterdir())


@pytest.mark.parametrize("mode", ["ccd", "guard"])
async def test_closed_management_port_fails_fast(openvpn: OpenVPNServer, mode: str) -> None:
    changes: dict[str, Any] = {"management_port": free_port()}
    if mode == "guard":
        changes["ccd_dir"] = None
    responder = build(openvpn, **changes)
    started = time.monotonic()
    try:
        with pytest.raises(ResponderError, match="connection refused"):
            await responder.execute("closed-jdoe")
    finally:
        if responder.guard is not None:
            await responder.guard.stop()
    assert time.monotonic() - started < 2
    assert not list(openvpn.ccd_dir.iterdir())
    assert responder.guard is None or not responder.guard.blocked


@pytest.mark.parametrize("mode", ["ccd", "guard"])
async def test_hanging_management_times_out(openvpn: OpenVPNServer, mode: str) -> None:
    """A socket that accepts and never answers (as OpenVPN does to a second client)."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    changes: dict[str, Any] = {"management_port": port, "timeout": 0.5}
    if mode == "guard":
        changes["ccd_dir"] = None
    responder = build(openvpn, **changes)
    await responder.hold([])  # the guard's own process (elsewhere a silent one is busy)
    started = time.monotonic()
    try:
        with pytest.raises(ResponderError, match="did not answer within 0.5 s"):
            await responder.execute("hang-jdoe")
    finally:
        await responder.release()
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()
    assert accepted and time.monotonic() - started < 1.5
    assert not list(openvpn.ccd_dir.iterdir())


async def test_unsafe_targets_are_refused_before_anything_is_sent(openvpn: OpenVPNServer) -> None:
    (alice,) = await connect_all(openvpn, "inj-alice")
    (session,) = openvpn.established("inj-alice")
    logins = openvpn.management_logins()
    targets = ["inj-alice\nsignal SIGTERM", "../etc/passwd", "a/b", "inj-alice\x00", "",
               ".inj-alice", "inj-alice kill x", "CORP\\", "UNDEF", "inj\u202ealice"]  # fmt: skip
    async with guarded(openvpn) as guard_mode:
        for responder in (build(openvpn), guard_mode):
            for target in targets:
                with pytest.raises(ResponderError, match="Refused to end the VPN sessions"):
                    await responder.execute(target)
        assert guard_mode.guard is not None and not guard_mode.guard.connected
    assert openvpn.management_logins() == logins  # nobody even connected to management
    assert not list(openvpn.ccd_dir.iterdir())
    assert openvpn.running and openvpn.established("inj-alice") == [session]
    assert alice.connections == 1


# -- without a client-config-dir: the guard -----------------------------------------


async def test_guard_ends_a_reconnecting_session_again_until_undone(
    openvpn: OpenVPNServer,
) -> None:
    jdoe, alice = await connect_all(openvpn, "guard-jdoe", "guard-alice")
    async with guarded(openvpn) as responder:
        guard = responder.guard
        assert guard is not None
        done = await responder.execute("guard-jdoe")
        assert done.summary == (
            "Ended 1 VPN session of guard-jdoe (common name guard-jdoe); "
            "Fido ends every new session of guard-jdoe until undone"
        )
        assert guard.blocked == {"guard-jdoe"}
        # the client reconnects within a second or two, and the guard ends it again
        await eventually(lambda: guard.rekills >= 2, 15, "no second re-kill")
        # the server's own account: the first session and at least one after a reconnect
        # were ended from outside (its log lags the management answer a little)
        await eventually(lambda: ended_by_kill(openvpn, "guard-jdoe") >= 2, 5, "log: no kills")
        assert jdoe.running and jdoe.attempts >= 3
        assert alice.connections == 1 and ended_by_kill(openvpn, "guard-alice") == 0
        assert not list(openvpn.ccd_dir.iterdir())

        undone = await responder.undo("guard-jdoe", done.undo_data)

        assert undone.summary == (
            "Stopped ending the VPN sessions of guard-jdoe (common name guard-jdoe); "
            "they can connect again"
        )
        await eventually(lambda: not guard.connected, 5, "the guard kept management")
        await eventually(lambda: bool(openvpn.established("guard-jdoe")), 15, "not back")
        kills = ended_by_kill(openvpn, "guard-jdoe")
        await throughout(lambda: bool(openvpn.established("guard-jdoe")), 2, "ended again")
        assert ended_by_kill(openvpn, "guard-jdoe") == kills


async def test_a_restarted_fido_holds_the_guards_containments_again(
    openvpn: OpenVPNServer,
) -> None:
    """Guard mode keeps people out from Fido's own process: after a restart the new
    responder is handed the containments still in force and ends the sessions again."""
    (jdoe,) = await connect_all(openvpn, "held-jdoe")
    async with guarded(openvpn) as before:
        done = await before.execute("held-jdoe")
    # the first Fido stopped (its guard with it): the client gets back in
    await eventually(lambda: bool(openvpn.established("held-jdoe")), 20, "not back in")
    assert isinstance(before, HoldsContainment)
    async with guarded(openvpn, leading=False) as after:  # a new process, as after a restart
        assert await after.hold([("held-jdoe", done.undo_data), ("x", {"mode": "ccd"})]) == 1
        guard = after.guard
        assert guard is not None and guard.blocked == {"held-jdoe"}
        # the guard holds the one management connection: its own count says it ended it
        await eventually(lambda: guard.rekills >= 1, 15, "not ended again")
        await after.undo("held-jdoe", done.undo_data)
    await eventually(lambda: ended_by_kill(openvpn, "held-jdoe") >= 2, 5, "log: no kills")
    assert await build(openvpn).hold([("held-jdoe", done.undo_data)]) == 0  # ccd_dir mode
    assert jdoe.running


# -- the guard follows the database, on the leading replica -------------------------


def leading(db: Database) -> Leadership:
    """This process as the leading replica (on PostgreSQL without taking the real lock,
    which another process may hold)."""
    leadership = Leadership(db, replica="r1")
    leadership.leader = True
    return leadership


async def test_the_leaders_guard_follows_actions_and_undos_stored_by_other_processes(
    openvpn: OpenVPNServer, db: Database
) -> None:
    """``fido respond`` (or a replica that does not lead) ends the session and stores the
    action; the leader's guard reads it within HOLD_EVERY and keeps the user out; an Undo
    stored elsewhere lets them in again as soon as the leader reads it."""
    jdoe, alice = await connect_all(openvpn, "db-jdoe", "db-alice")
    policy = Policy(actions=[ActionPolicy(responder="openvpn_kill_session")])
    elsewhere = build(openvpn, ccd_dir=None)  # another process: it never holds
    async with guarded(openvpn, leading=False) as on_leader:
        holding = HeldContainments(leading(db), {NAME: on_leader})
        await holding.run()  # nothing in force: the guard does not take the interface
        assert on_leader.guard is not None and not on_leader.guard.connected

        action, ran = await act.respond(
            db=db,
            policy=policy,
            responders={NAME: elsewhere},
            responder=NAME,
            target="db-jdoe",
            operator="operator:root",
        )
        assert ran and action.status == "succeeded", action.result
        assert action.result.startswith("Ended 1 VPN session of db-jdoe (common name db-jdoe)")
        assert elsewhere.guard is not None and not elsewhere.guard.blocked

        # no leader has read it yet: the client comes back ...
        await eventually(lambda: jdoe.connections >= 2, 20, "the session was not ended")
        for _ in range(int(10 / HOLD_EVERY)):  # ... until the leader's job runs
            await holding.run()
            await asyncio.sleep(HOLD_EVERY)
        guard = on_leader.guard
        assert guard.blocked == {"db-jdoe"} and guard.rekills >= 1
        kills = ended_by_kill(openvpn, "db-jdoe")
        await eventually(lambda: ended_by_kill(openvpn, "db-jdoe") > kills, 20, "not kept out")
        assert ended_by_kill(openvpn, "db-alice") == 0 and alice.connections == 1

        undone = await act.undo(
            db=db, responders={NAME: elsewhere}, action_id=action.id or 0, actor="U1"
        )
        assert undone.status == "undone"
        assert "stops ending the VPN sessions of db-jdoe" in (undone.result or "")
        await holding.run()
        assert not guard.blocked
        await eventually(lambda: not guard.connected, 5, "the guard kept the interface")
        await eventually(lambda: bool(openvpn.established("db-jdoe")), 20, "not back in")
        assert jdoe.running


async def test_a_replica_that_stops_leading_lets_the_interface_go(
    openvpn: OpenVPNServer, db: Database
) -> None:
    (jdoe,) = await connect_all(openvpn, "lost-jdoe")
    async with guarded(openvpn, leading=False) as responder:
        leadership = leading(db)
        holding = HeldContainments(leadership, {NAME: responder})
        done = await build(openvpn, ccd_dir=None).execute("lost-jdoe")
        async with db.session() as session:
            session.add(stored(done, "lost-jdoe"))
            await session.commit()
        await holding.run()
        guard = responder.guard
        assert guard is not None and guard.blocked == {"lost-jdoe"}
        await eventually(lambda: guard.connected, 5, "the guard did not connect")

        leadership.leader = False  # another replica took over
        await holding.run()

        assert not guard.connected and not guard.blocked and not responder.holding
        # the interface is free for the new leader's guard (here: the test's own command)
        assert openvpn.sessions() is not None
        await eventually(lambda: bool(openvpn.established("lost-jdoe")), 20, "not back in")
        assert jdoe.running


async def test_while_the_leaders_guard_holds_the_interface_others_leave_it_the_work(
    openvpn: OpenVPNServer, db: Database
) -> None:
    """OpenVPN leaves a second management client unanswered: another replica's click is
    recorded for the guard, which ends the session as soon as its job reads it."""
    # names of this run's own: the server and its log serve the SQLite and PostgreSQL runs
    tag = uuid.uuid4().hex[:6]
    jdoe_cn, alice_cn = f"busy-jdoe-{tag}", f"busy-alice-{tag}"
    jdoe, alice = await connect_all(openvpn, jdoe_cn, alice_cn)
    async with guarded(openvpn, leading=False) as on_leader:
        holding = HeldContainments(leading(db), {NAME: on_leader})
        first = await build(openvpn, ccd_dir=None).execute(alice_cn)
        async with db.session() as session:
            session.add(stored(first, alice_cn))
            await session.commit()
        await holding.run()
        guard = on_leader.guard
        assert guard is not None
        await eventually(lambda: guard.connected, 5, "the guard did not connect")

        done = await build(openvpn, ccd_dir=None, timeout=0.5).execute(jdoe_cn)

        assert done.summary.startswith(
            f"The OpenVPN management interface at 127.0.0.1:{openvpn.management_port} did "
            "not answer within 0.5 s"
        )
        assert done.summary.endswith(
            "Fido's session guard, which holds it on the leading replica, ends the sessions "
            f"of {jdoe_cn} (common name {jdoe_cn}) within seconds and every new one until undone"
        )
        assert done.undo_data["mode"] == "guard"
        assert ended_by_kill(openvpn, jdoe_cn) == 0  # nothing reached the server yet
        async with db.session() as session:
            session.add(stored(done, jdoe_cn))
            await session.commit()
        await holding.run()
        assert guard.blocked == {alice_cn, jdoe_cn}
        # ended, and ended again when it reconnects (the server's own log says so)
        await eventually(lambda: ended_by_kill(openvpn, jdoe_cn) >= 2, 20, "not kept out")
        assert jdoe.running and alice.running


async def test_with_client_auth_the_leaders_guard_admits_everyone_but_the_blocked() -> None:
    """--management-client-auth: OpenVPN admits nobody no management client answers for,
    so the leader's guard holds the interface even while nothing is blocked."""
    with start_openvpn(client_auth=True) as server:
        responder = build(server, ccd_dir=None, client_auth=True)
        guard = responder.guard
        assert guard is not None
        await responder.hold([])
        try:
            await eventually(lambda: guard.connected, 5, "the guard did not take the interface")
            jdoe, alice = server.start_client("gate-jdoe"), server.start_client("gate-alice")

            def admitted() -> bool:
                return jdoe.connections == 1 and alice.connections == 1

            await eventually(admitted, 30, "the guard did not admit them")
            done = await responder.execute("gate-jdoe")
            assert done.summary.startswith("Ended 1 VPN session of gate-jdoe")
            # the client retries every few seconds, slower on a busy machine
            await eventually(lambda: guard.denied >= 1, 40, "gate-jdoe was not denied")
            assert jdoe.running and jdoe.connections == 1 and alice.connections == 1
        finally:
            await responder.release()
        assert not guard.connected


def stored(done: Any, target: str) -> Action:
    return Action(
        incident_id=None,
        responder=NAME,
        target=target,
        idempotency_key=f"test:{target}",
        requested_by="operator:root",
        status="succeeded",
        result=done.summary,
        undo_data=done.undo_data,
    )
