"""Detector webhooks: 202 only after the event is stored; every refusal says why and
stores nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from select import select as readable

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select

from bot.server import MAX_ALERTS, MAX_BODY, PARSE_INLINE, build_http_app
from integrations.detectors.generic import GenericDetector
from pipeline.db import Database, upgrade_when_reachable
from pipeline.errors import ConfigError, ParseError
from pipeline.models import DeadLetter, Event
from pipeline.plugins import ParsedEvent
from pipeline.worker import Door
from tests.bot.test_serve import clean_env, fido
from tests.fixtures.servers import free_port

TOKEN = "detector-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    woken: list[bool] = []
    app = build_http_app(
        db=db,
        detectors={"generic": GenericDetector()},
        webhook_token=SecretStr(TOKEN),
        on_ingest=lambda: woken.append(True),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fido.test") as c:
        c.woken = woken  # type: ignore[attr-defined]
        yield c


async def stored(db: Database) -> list[Event]:
    async with db.session() as session:
        return list((await session.exec(select(Event))).all())


async def test_accepted_alert_is_stored_before_202(client: httpx.AsyncClient, db: Database) -> None:
    body = {"id": "x-1", "title": "Bad thing", "severity": "high", "user": "alice"}
    response = await client.post("/webhooks/generic", content=json.dumps(body), headers=AUTH)
    assert response.status_code == 202
    [event] = await stored(db)
    assert response.json() == {"accepted": [event.id], "duplicates": []}
    assert (event.detector, event.external_id, event.status) == ("generic", "x-1", "pending")
    assert client.woken == [True]  # type: ignore[attr-defined]


async def test_redelivery_is_reported_as_duplicate(client: httpx.AsyncClient, db: Database) -> None:
    body = json.dumps({"id": "x-1", "title": "Bad thing"})
    await client.post("/webhooks/generic", content=body, headers=AUTH)
    again = await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert again.status_code == 202
    assert again.json() == {"accepted": [], "duplicates": ["x-1"]}
    assert len(await stored(db)) == 1


GOOD = json.dumps({"title": "x"}).encode()


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "detail"),
    [
        ("/webhooks/generic", {"Content-Type": "application/json"}, GOOD, 401, "bearer token"),
        ("/webhooks/generic", {**AUTH, "Authorization": "Bearer wrong"}, GOOD, 401, "bearer"),
        ("/webhooks/generic", {**AUTH, "Authorization": f"Basic {TOKEN}"}, GOOD, 401, "bearer"),
        ("/webhooks/nosuch", AUTH, GOOD, 404, "no detector named 'nosuch'"),
        ("/webhooks/generic", {**AUTH, "Content-Type": "text/plain"}, GOOD, 415, "Content-Type"),
        ("/webhooks/generic", AUTH, b"{" + b" " * MAX_BODY + b"}", 413, "larger than"),
        ("/webhooks/generic", AUTH, b"{not json", 422, "not valid JSON"),
        ("/webhooks/generic", AUTH, b'{"severity": "low"}', 422, "'title' is required"),
    ],
)
async def test_bad_requests_get_a_reason_and_store_nothing(
    client: httpx.AsyncClient,
    db: Database,
    path: str,
    headers: dict,
    body: bytes,
    status: int,
    detail: str,
) -> None:
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == status
    assert detail in response.json()["detail"]
    assert await stored(db) == []


async def test_oversized_body_without_content_length_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * (MAX_BODY // 10)

    response = await client.post("/webhooks/generic", content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert await stored(db) == []


async def test_no_token_configured_refuses_everyone(db: Database) -> None:
    app = build_http_app(db=db, detectors={"generic": GenericDetector()}, webhook_token=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
    ) as c:
        response = await c.post(
            "/webhooks/generic", content=GOOD, headers={**AUTH, "Authorization": "Bearer "}
        )
    assert response.status_code == 401


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_metrics_count_what_is_stored(client: httpx.AsyncClient) -> None:
    await client.post("/webhooks/generic", content=b'{"id": "m1", "title": "x"}', headers=AUTH)
    await client.post("/webhooks/generic", content=b"{broken", headers=AUTH)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'fido_events{status="pending"} 1.0' in lines
    assert 'fido_dead_letters{status="pending"} 1.0' in lines
    assert "fido_deferred_lookups 0.0" in lines


async def test_metrics_count_verdicts_and_what_each_suppression_hid(
    client: httpx.AsyncClient, db: Database
) -> None:
    from datetime import UTC, datetime, timedelta

    from pipeline.engine import Engine
    from pipeline.models import CloseVerdict
    from pipeline.policy import Policy, SuppressionMatch, SuppressionRule

    rule = SuppressionRule(
        name="pentest",
        match=SuppressionMatch(title="scan*"),
        owner="secops",
        reason="pen test",
        expires=datetime.now(UTC) + timedelta(days=1),
    )
    engine = Engine(db=db, policy=Policy(enrichers=[], suppressions=[rule]), approvers=["UA"])
    for i, title in enumerate(("scan one", "scan two", "real one")):
        body = json.dumps({"id": f"s{i}", "title": title, "host": f"h{i}"}).encode()
        await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert await engine.drain() == 3
    await engine.incidents.close(incident_id=3, verdict=CloseVerdict.true_positive, actor="UA")
    lines = (await client.get("/metrics")).text.splitlines()
    assert 'fido_suppressed_alerts{suppression="policy:pentest"} 2.0' in lines
    assert 'fido_incident_verdicts{verdict="true_positive"} 1.0' in lines


# ---- hostile input at the door -----------------------------------------------------------


async def dead_letters(db: Database) -> list[DeadLetter]:
    async with db.session() as session:
        return list((await session.exec(select(DeadLetter))).all())


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        ({"id": "x\u0000", "title": "Bad thing"}, "'id'"),
        ({"id": "x-1", "title": "Bad thing", "user": "alice\u0000"}, "'user'"),
        ({"id": "x-1", "title": "Bad thing", "host": "pc\u0007-1"}, "'host'"),
        ({"id": "x-1", "title": "x", "occurred_at": "9999-12-31T23:59:59-23:59"}, "'occurred_at'"),
    ],
)
async def test_hostile_fields_get_a_422_naming_the_field_and_are_kept_verbatim(
    client: httpx.AsyncClient, db: Database, alert: dict, field: str
) -> None:
    body = json.dumps(alert).encode()
    response = await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert await stored(db) == []
    [letter] = await dead_letters(db)
    assert letter.body == body and "\x00" not in letter.error


async def test_a_nul_in_a_title_is_cleaned_and_the_alert_accepted(
    client: httpx.AsyncClient, db: Database
) -> None:
    body = json.dumps({"id": "x-1", "title": "Bad\u0000 thing"}).encode()
    response = await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert response.status_code == 202, response.text
    [event] = await stored(db)
    assert event.title == "Bad\ufffd thing" and event.raw == body.decode()


async def test_a_delivery_over_the_alert_cap_is_refused_naming_the_limit(
    client: httpx.AsyncClient, db: Database
) -> None:
    alerts = [{"id": str(n), "title": "t"} for n in range(MAX_ALERTS + 1)]
    body = json.dumps(alerts, separators=(",", ":")).encode()
    assert len(body) <= MAX_BODY
    response = await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert response.status_code == 413
    assert f"at most {MAX_ALERTS} alerts" in response.json()["detail"]
    assert await stored(db) == []


async def test_a_delivery_at_the_alert_cap_is_accepted(
    client: httpx.AsyncClient, db: Database
) -> None:
    alerts = [{"id": str(n), "title": "t"} for n in range(MAX_ALERTS)]
    body = json.dumps(alerts, separators=(",", ":")).encode()
    response = await client.post("/webhooks/generic", content=body, headers=AUTH)
    assert response.status_code == 202
    assert len(response.json()["accepted"]) == MAX_ALERTS


class SlowDetector(GenericDetector):
    """Parses like generic, slowly, the way a large delivery does."""

    name = "slow"

    def parse(self, body: bytes) -> list[ParsedEvent]:
        time.sleep(0.5)
        return super().parse(body)


async def test_parsing_a_large_body_does_not_block_the_event_loop(db: Database) -> None:
    alerts = [{"id": f"big-{n}", "title": "x" * 200} for n in range(400)]
    body = json.dumps(alerts).encode()
    assert len(body) > PARSE_INLINE  # small bodies are parsed inline: cheaper than a thread
    app = build_http_app(db=db, detectors={"slow": SlowDetector()}, webhook_token=SecretStr(TOKEN))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
    ) as c:
        response = await c.post("/webhooks/slow", content=body, headers=AUTH)
    ticker.cancel()
    assert response.status_code == 202
    assert len(response.json()["accepted"]) == 400
    assert ticks >= 20  # the loop kept running while the parser worked


async def test_a_delivery_is_counted_at_the_door_while_it_is_taken_in(db: Database) -> None:
    """The worker yields to deliveries in flight (pipeline/worker.py Door): each webhook
    counts while it is parsed and committed, failed or not, and never after."""
    door = Door()
    seen: list[int] = []

    class Watching(GenericDetector):
        name = "watching"

        def parse(self, body: bytes) -> list[ParsedEvent]:
            seen.append(door.in_flight)
            return super().parse(body)

    app = build_http_app(
        db=db, detectors={"watching": Watching()}, webhook_token=SecretStr(TOKEN), door=door
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
    ) as c:
        ok = await c.post("/webhooks/watching", json={"id": "d1", "title": "t"}, headers=AUTH)
        bad = await c.post("/webhooks/watching", json={"id": "d2"}, headers=AUTH)
    assert (ok.status_code, bad.status_code) == (202, 422)
    assert seen == [1, 1] and door.in_flight == 0


# ---- the database unreachable ------------------------------------------------------------


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a database hung or blackholed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    yield free_port()


@contextlib.contextmanager
def postgresql(unreachable: Callable[[], contextlib.AbstractContextManager[int]]) -> Iterator[str]:
    with unreachable() as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/fido"


@contextlib.contextmanager
def sqlite_in_a_missing_directory() -> Iterator[str]:
    yield "sqlite:////nonexistent/fido/fido.db"


@pytest.mark.parametrize(
    "database",
    [
        lambda: postgresql(closed_port),
        lambda: postgresql(silent_server),
        sqlite_in_a_missing_directory,
    ],
    ids=["closed-port", "silent-server", "sqlite-unopenable"],
)
async def test_an_unreachable_database_gets_a_quick_json_503_with_retry_after(
    database: Callable[[], contextlib.AbstractContextManager[str]],
) -> None:
    with database() as url:
        db = Database(url)
        app = build_http_app(
            db=db, detectors={"generic": GenericDetector()}, webhook_token=SecretStr(TOKEN)
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
        ) as c:
            started = time.monotonic()
            response = await c.post("/webhooks/generic", content=GOOD, headers=AUTH)
            elapsed = time.monotonic() - started
            health = await c.get("/healthz")
        await db.dispose()
    assert elapsed < 10
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert "database" in response.json()["detail"]
    assert health.status_code == 200  # alive: a liveness probe must not restart it for this


async def test_healthz_is_liveness_and_never_touches_the_database(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database outage makes every replica unready, never dead: ``/healthz`` answers 200
    without a query and logs nothing; ``/readyz`` is the probe that names the database."""
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/fido")
    app = build_http_app(
        db=db, detectors={"generic": GenericDetector()}, webhook_token=SecretStr(TOKEN)
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
        ) as c:
            with caplog.at_level(logging.DEBUG):
                alive = [await c.get("/healthz") for _ in range(3)]
            logged = [r for r in caplog.records if r.name.startswith(("bot", "pipeline"))]
            ready = await c.get("/readyz")
    finally:
        await db.dispose()
    assert [(r.status_code, r.json()) for r in alive] == [(200, {"status": "ok"})] * 3
    assert logged == []
    assert ready.status_code == 503
    assert "database" in ready.json()["failing"]


async def test_start_up_retries_an_unreachable_database_with_one_line_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/fido"
    with caplog.at_level(logging.WARNING, logger="pipeline.db"), pytest.raises(ConfigError):
        await upgrade_when_reachable(url, attempts=3, delay=0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.db"]
    assert len(lines) == 3
    assert all("\n" not in line and "database unreachable" in line for line in lines)
    assert "attempt 1 of 3" in lines[0] and "retrying" in lines[0]


def test_serve_with_the_database_down_says_so_in_one_line_and_retries(tmp_path: Path) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("enrichers: []\nactions:\n  - responder: log_only\n")
    env = clean_env(
        FIDO_CONFIG=str(policy),
        FIDO_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/fido",
        FIDO_HTTP_PORT=str(free_port()),
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_SLACK_CHANNEL="C0DOWN",
        SLACK_BOT_TOKEN="xoxb-down",
        SLACK_SIGNING_SECRET="down-secret",
    )
    process = fido("serve", env=env, cwd=tmp_path)
    assert process.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while sum("database unreachable" in line for line in output) < 2:
            assert time.monotonic() < deadline, output
            ready, _, _ = readable([process.stdout], [], [], 1)
            if ready:
                line = process.stdout.readline()
                assert line, f"fido serve stopped: {output}"
                output.append(line)
        assert process.poll() is None  # still waiting for the database
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
    first, second = [line for line in output if "database unreachable" in line]
    assert "attempt 1 of" in first and "Connection refused" in first and "retrying" in first
    assert "attempt 2 of" in second
    assert not any("Traceback" in line for line in output)


class QuotingDetector(GenericDetector):
    """A parser whose refusal quotes the payload, NUL and all, as some vendors' do."""

    name = "quoting"

    def parse(self, body: bytes) -> list[ParsedEvent]:
        raise ParseError(f"an API error, not alerts: {json.loads(body)['message']}")


async def test_a_refusal_quoting_a_nul_is_still_kept_as_a_dead_letter(db: Database) -> None:
    app = build_http_app(
        db=db, detectors={"quoting": QuotingDetector()}, webhook_token=SecretStr(TOKEN)
    )
    body = json.dumps({"message": "bad\u0000news"}).encode()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
    ) as c:
        response = await c.post("/webhooks/quoting", content=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"] == "an API error, not alerts: bad\ufffdnews"
    [letter] = await dead_letters(db)
    assert letter.body == body
