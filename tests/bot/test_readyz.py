"""``GET /readyz``: 200 with every check when Fido can take traffic; 503 naming the check that
fails — the database, its migrations, Slack's Socket Mode connection, the scheduler.
``/healthz`` only says the process is alive and answers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import SecretStr

from bot.server import build_http_app
from integrations.detectors.generic import GenericDetector
from pipeline import db as database
from pipeline import observe
from pipeline.db import Database
from tests.bot.test_serve import TOKEN, clean_env, fido
from tests.fixtures.servers import free_port
from tests.fixtures.slack_socket import SocketModeSlack


def app(db: Database, readiness: Mapping[str, observe.Check] | None = None) -> httpx.AsyncClient:
    api = build_http_app(
        db=db,
        detectors={"generic": GenericDetector()},
        webhook_token=SecretStr("t"),
        readiness=readiness,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://fido.test")


@pytest.fixture
async def scheduler() -> AsyncIterator[AsyncIOScheduler]:
    running = AsyncIOScheduler()
    running.start()
    yield running
    if running.running:
        running.shutdown(wait=False)


async def test_ready_when_every_check_passes(db: Database, scheduler: AsyncIOScheduler) -> None:
    checks = {"scheduler": observe.running("the scheduler", lambda: scheduler.running)}
    async with app(db, checks) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "scheduler": "ok"},
    }


async def test_scheduler_stopped_is_named(db: Database, scheduler: AsyncIOScheduler) -> None:
    checks = {"scheduler": observe.running("the scheduler", lambda: scheduler.running)}
    async with app(db, checks) as client:
        assert (await client.get("/readyz")).status_code == 200
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
        response = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unready"
    assert body["failing"] == ["scheduler"]
    assert body["checks"]["scheduler"] == "the scheduler is not running"
    assert body["checks"]["database"] == "ok"
    assert alive.status_code == 200  # alive, just not ready


async def test_database_unreachable_is_named() -> None:
    nobody = free_port()  # nothing listens there: connection refused at once
    db = Database(f"postgresql://postgres@127.0.0.1:{nobody}/test")
    try:
        async with app(db) as client:
            started = time.monotonic()
            response = await client.get("/readyz")
    finally:
        await db.dispose()
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["database", "migrations"]
    assert body["checks"]["database"].startswith("unreachable: ")
    assert "refused" in body["checks"]["database"].lower()


async def test_old_schema_is_named(database_url: str) -> None:
    database.upgrade(database_url, "0010")  # a release behind this code
    db = Database(database_url)
    try:
        async with app(db) as client:
            behind = await client.get("/readyz")
            await asyncio.to_thread(database.upgrade, database_url)  # fido db upgrade
            current = await client.get("/readyz")
    finally:
        await db.dispose()
    assert behind.status_code == 503
    assert behind.json()["failing"] == ["migrations"]
    assert behind.json()["checks"]["migrations"].startswith("at revision 0010, expected ")
    assert "fido db upgrade" in behind.json()["checks"]["migrations"]
    assert current.status_code == 200


async def test_empty_database_is_not_ready(database_url: str) -> None:
    db = Database(database_url)  # never migrated
    try:
        async with app(db) as client:
            response = await client.get("/readyz")
    finally:
        await db.dispose()
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"].startswith("at revision (empty)")


async def test_a_check_that_hangs_or_raises_fails_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observe, "CHECK_TIMEOUT", 0.2)

    async def hangs() -> str | None:
        await asyncio.sleep(10)
        return None

    async def raises() -> str | None:
        raise RuntimeError("socket gone\nsecond line")

    async with app(db, {"slow": hangs, "broken": raises}) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["slow", "broken"]
    assert body["checks"]["slow"] == "no answer within 0.2 s"
    assert body["checks"]["broken"] == "RuntimeError: socket gone"


def wait_for(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def readyz(port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.TransportError:
        return None


def test_serve_in_socket_mode_is_unready_once_slack_is_gone(
    tmp_path: Path, socket_slack: SocketModeSlack
) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("enrichers: []\nactions: [{responder: log_only}]\n")
    port = free_port()
    env = clean_env(
        FIDO_DATABASE_URL=f"sqlite:///{tmp_path / 'fido.db'}",
        FIDO_CONFIG=str(policy),
        FIDO_HTTP_PORT=str(port),
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_SLACK_CHANNEL="C0READY",
        SLACK_BOT_TOKEN=socket_slack.token,
        SLACK_APP_TOKEN=socket_slack.app_token,
        SLACK_API_URL=socket_slack.base_url,
    )
    process = fido("serve", env=env, cwd=tmp_path)
    try:
        wait_for(lambda: (r := readyz(port)) is not None and r.status_code == 200, "never ready")
        ready = readyz(port)
        assert ready is not None
        assert ready.json()["checks"] == {
            "database": "ok",
            "migrations": "ok",
            "scheduler": "ok",
            "slack": "ok",
        }
        socket_slack.stop()  # Slack goes away: the WebSocket closes, reconnecting fails
        wait_for(
            lambda: (r := readyz(port)) is not None and r.status_code == 503,
            "still ready without Slack",
        )
        gone = readyz(port)
        assert gone is not None
        assert gone.json()["failing"] == ["slack"]
        assert gone.json()["checks"]["slack"] == "Socket Mode is not connected"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert socket_slack.app_token not in output
