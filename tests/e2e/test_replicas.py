"""Three real ``fido serve`` replicas on one PostgreSQL database, started together: 2,000
alerts posted round-robin, one replica killed with SIGKILL in the middle, the other two
finish its work. Every event is processed once, the incidents' event counts sum to the
events, every incident has its card and its automatic action once; the actions the killed
replica was running are marked interrupted by the leader, never left running or run twice.

Runs when ``FIDO_TEST_DATABASE_URL`` names a PostgreSQL (a throw-away database is created
beside it and dropped afterwards).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pipeline.db import sync_url
from tests.bot.test_serve import TOKEN, serve_env
from tests.fixtures.servers import free_port
from tests.fixtures.slack import FakeSlack

POSTGRES = os.environ.get("FIDO_TEST_DATABASE_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES, reason="needs FIDO_TEST_DATABASE_URL (PostgreSQL)"),
]

# 2,000 by default; FIDO_TEST_REPLICA_ALERTS makes a quicker run on a busy machine
ALERTS = int(os.environ.get("FIDO_TEST_REPLICA_ALERTS", "2000"))
USERS = max(1, ALERTS // 10)  # ten alerts per user: replicas correlate into one incident at once
DIRECTORY = ", ".join(f"user{i}: {{display_name: User {i}}}" for i in range(USERS))
POLICY = f"""\
enrichers: [static_directory]
enricher_options:
  static_directory:
    users: {{{DIRECTORY}}}
worker_concurrency: 16
thresholds: {{notify: 10, ask_approval: 20, auto_act: 20}}
max_auto_actions_per_hour: 100000
actions:
  - responder: log_only
"""


@pytest.fixture
def database() -> Iterator[str]:
    """A PostgreSQL database of its own (advisory locks are per database), dropped after."""
    assert POSTGRES is not None
    name = f"fido_replicas_{uuid.uuid4().hex[:10]}"
    admin = create_engine(sync_url(POSTGRES), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> str:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return base
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "fido serve did not become healthy"
        time.sleep(0.2)


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def scalar(url: str, sql: str, **params: str) -> int:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql), params).scalar() or 0)
    finally:
        engine.dispose()


async def post_all(bases: dict[str, str], killed: asyncio.Event, victim: str) -> None:
    """Post the alerts round-robin over the replicas, 24 at a time; a delivery to a replica
    that died is sent again to another, as a detector retries (the id makes it once)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(ALERTS):
        queue.put_nowait(i)
    names = list(bases)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            alert = {
                "id": f"r-{i}",
                "title": f"alert {i}",
                "severity": "high",
                "user": f"user{i % USERS}",
            }
            for attempt in range(len(names) * 3):
                name = names[(i + attempt) % len(names)]
                if name == victim and killed.is_set():
                    continue
                try:
                    response = await client.post(
                        f"{bases[name]}/webhooks/generic", json=alert, headers=headers
                    )
                except httpx.TransportError:
                    continue  # the replica died under this delivery: another takes it
                if response.status_code == 202:
                    break
                assert response.status_code == 503, response.text  # only "try again"
            else:
                raise AssertionError(f"alert {i} was never accepted")

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(sender(client) for _ in range(24)))


LEADS = "now runs the singleton jobs"


def leader_of(logs: dict[str, Path], timeout: float = 30) -> str:
    """The replica that took the singleton jobs (each checks every 2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leading = [name for name, log in logs.items() if LEADS in log.read_text()]
        if leading:
            [name] = leading
            return name
        time.sleep(0.2)
    raise AssertionError("no replica took the singleton jobs")


def test_three_replicas_one_killed_every_event_once(
    database: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    (tmp_path / "fido.yml").write_text(POLICY)
    names = ["r0", "r1", "r2"]
    ports = {name: free_port() for name in names}
    logs = {name: tmp_path / f"{name}.log" for name in names}
    sinks = {name: logs[name].open("wb") for name in names}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"],
            env={
                **serve_env(tmp_path, fake_slack, port=ports[name], channel="C0REPLICAS"),
                "FIDO_DATABASE_URL": database,
                "FIDO_REPLICA": name,
                # the fake Slack has no per-channel limit: no need to pace the cards
                "FIDO_SLACK_MESSAGES_PER_SECOND": "1000",
            },
            cwd=tmp_path,
            stdout=sinks[name],
            stderr=subprocess.STDOUT,
        )
        for name in names  # started together: they migrate once, under the lock
    }
    started = time.monotonic()
    try:
        bases = {name: wait_healthy(processes[name], ports[name], logs[name]) for name in names}
        victim = leader_of(logs)  # the leader dies: its singleton jobs must move

        async def run() -> None:
            killed = asyncio.Event()
            posting = asyncio.create_task(post_all(bases, killed, victim))
            while (
                scalar(database, "SELECT count(*) FROM event WHERE status = 'done'") < ALERTS // 4
            ):
                assert not posting.done() or posting.exception() is None
                await asyncio.sleep(0.05)
            processes[victim].send_signal(signal.SIGKILL)  # mid-run, events in its hands
            killed.set()
            await posting

        asyncio.run(run())
        processes[victim].wait(timeout=30)
        # the killed replica's outbox leases run out after 60 s; the rest is throughput
        deadline = time.monotonic() + 90 + ALERTS / 4
        while True:
            undone = scalar(database, "SELECT count(*) FROM event WHERE status != 'done'")
            unsent = scalar(database, "SELECT count(*) FROM outbox WHERE status != 'sent'")
            running = scalar(database, "SELECT count(*) FROM action WHERE status = 'running'")
            if undone == 0 and unsent == 0 and running == 0:
                break
            for name in names:
                if name != victim:
                    assert processes[name].poll() is None, logs[name].read_text()
            assert time.monotonic() < deadline, (
                f"{undone} events, {unsent} messages, {running} running actions left"
            )
            time.sleep(0.25)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            process.wait(timeout=60)
            sinks[name].close()
        outputs = {name: log.read_text() for name, log in logs.items()}
    print(f"{ALERTS} alerts, 3 replicas, one killed: {time.monotonic() - started:.0f} s")
    for name in names:
        if name != victim:
            assert processes[name].returncode == 0, outputs[name]

    events = scalar(database, "SELECT count(*) FROM event")
    counted = scalar(database, "SELECT sum(event_count) FROM incident")
    scored = scalar(database, "SELECT count(*) FROM audit_entry WHERE verb = 'incident.scored'")
    assert events == counted == scored == ALERTS  # each event processed exactly once
    incidents = scalar(database, "SELECT count(*) FROM incident")
    # every incident acted on once: one action per incident and target, executed once; an
    # action the killed replica was running when it died is marked interrupted by the
    # leader (whether it acted is unknown: never run twice), none is left running
    assert scalar(database, "SELECT count(*) FROM action") == incidents
    assert scalar(database, "SELECT count(DISTINCT incident_id) FROM action") == incidents
    succeeded = scalar(database, "SELECT count(*) FROM action WHERE status = 'succeeded'")
    interrupted = scalar(database, "SELECT count(*) FROM action WHERE status = 'interrupted'")
    running = scalar(database, "SELECT count(*) FROM action WHERE status = 'running'")
    assert running == 0 and succeeded + interrupted == incidents, (succeeded, interrupted)
    assert interrupted <= 16, interrupted  # at most what its workers held in flight
    audited = "SELECT count(*) FROM audit_entry WHERE verb = 'action.succeeded'"
    assert scalar(database, audited) == succeeded
    stopped = "SELECT count(*) FROM audit_entry WHERE verb = 'action.interrupted'"
    assert scalar(database, stopped) == interrupted
    others = "SELECT count(*) FROM action WHERE status = 'interrupted' AND replica != :victim"
    assert scalar(database, others, victim=victim) == 0  # only the killed replica's
    # the leader moved: another replica took the singleton jobs after the kill
    assert sum(LEADS in outputs[name] for name in names if name != victim) == 1, outputs
    # each incident's card was posted and recorded once
    carded = scalar(database, "SELECT count(DISTINCT message_ts) FROM incident")
    assert carded == incidents, rows(
        database,
        "SELECT i.id, i.decision, i.message_ts, o.kind, o.status, o.attempts, o.last_error "
        "FROM incident i LEFT JOIN outbox o ON o.incident_id = i.id WHERE i.message_ts IS NULL",
    )
    posts = Counter(
        int(match.group(1))
        for call in fake_slack.calls("chat.postMessage")
        if (match := re.search(r"Incident #(\d+)", call.get("text", "")))
    )
    assert set(posts) == {row[0] for row in rows(database, "SELECT id FROM incident")}
    # a card the killed replica was sending when it died may be sent again (Slack has no
    # idempotency key); nothing else is
    duplicates = {incident: n for incident, n in posts.items() if n > 1}
    assert all(n == 2 for n in duplicates.values()) and len(duplicates) <= 16, duplicates
    migrations = sorted(
        line.split("pipeline.db: ")[1]
        for output in outputs.values()
        for line in output.splitlines()
        if "pipeline.db: database" in line
    )
    head = migrations[0].rsplit(" ", 1)[1]
    assert migrations == [  # one replica migrated; the others waited and found it done
        f"database at revision {head}",
        f"database at revision {head}",
        f"database migrated from revision (empty) to {head}",
    ]
    # the ten alerts of a user make one incident, and the user is disabled once
    targets = scalar(database, "SELECT count(DISTINCT target) FROM action")
    assert incidents == USERS and targets == incidents, (incidents, targets)
