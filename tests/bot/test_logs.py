"""Logs: text by default, one JSON object per line with ``FIDO_LOG_FORMAT=json``; the event
and incident a line is about; a failing dependency in one line; no secret and no raw
payload, checked on a real ``fido serve``."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bot import logs
from bot.service import poll_source
from integrations.detectors.generic import GenericDetector
from pipeline import observe
from pipeline.db import Database
from pipeline.errors import ConfigError
from tests.bot.test_serve import fido, serve_env
from tests.fixtures.servers import free_port
from tests.fixtures.slack import FakeSlack


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("fido.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


async def refused() -> Exception:
    """A real driver error: PostgreSQL refusing the connection."""
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    try:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        return exc
    finally:
        await db.dispose()
    raise AssertionError("the connection was not refused")


def test_json_line_has_the_fields_and_the_task_context(captured) -> None:  # type: ignore[no-untyped-def]
    logger, stream, handler = captured
    handler.setFormatter(logs.JsonFormatter())

    async def worker_task() -> None:
        observe.bind(event=41)
        logger.info("triaged %s", "it", extra={"incident_id": 7, "detector": "generic"})

    async def main() -> None:
        await asyncio.create_task(worker_task())
        logger.warning("outside any task's event")

    asyncio.run(main())
    first, second = (json.loads(line) for line in lines(stream))
    assert set(first) == {
        "time",
        "level",
        "logger",
        "message",
        "event_id",
        "incident_id",
        "detector",
    }
    assert first["level"] == "INFO" and first["logger"] == "fido.test.logs"
    assert first["message"] == "triaged it"
    assert (first["event_id"], first["incident_id"], first["detector"]) == (41, 7, "generic")
    assert first["time"].endswith("+00:00")
    assert "event_id" not in second and second["level"] == "WARNING"  # the task's, not ours


def test_a_bug_keeps_its_traceback_in_one_field(captured) -> None:  # type: ignore[no-untyped-def]
    logger, stream, handler = captured
    handler.setFormatter(logs.JsonFormatter())
    try:
        {}["missing"]
    except KeyError:
        logger.exception("event 3 failed")
    [line] = lines(stream)  # one line, however long the traceback
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "exception"}
    assert entry["exception"].startswith("Traceback (most recent call last)")
    assert entry["exception"].endswith("KeyError: 'missing'")


async def test_a_failing_dependency_is_one_line_without_traceback(captured) -> None:  # type: ignore[no-untyped-def]
    logger, stream, handler = captured
    exc = await refused()
    assert logs.dependency_failure(exc)
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        handler.setFormatter(formatter)
        try:
            raise exc
        except Exception:
            logger.exception("worker: could not claim events; retrying")
    text_line, json_line = lines(stream)
    assert "worker: could not claim events; retrying: OperationalError: " in text_line
    assert "refused" in text_line.lower() and "Traceback" not in text_line
    entry = json.loads(json_line)
    assert entry["exception"].startswith("OperationalError: ") and "traceback" not in entry


async def test_an_exception_formatted_into_a_message_stays_on_one_line(captured) -> None:  # type: ignore[no-untyped-def]
    """``log.warning("…: %s", exc)`` with SQLAlchemy's three-line text is one line, in
    both formats, with the driver's reason kept."""
    logger, stream, handler = captured
    exc = await refused()
    assert "\n" in str(exc)
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        handler.setFormatter(formatter)
        logger.warning("source %s failed: %s", "mail", exc)
    text_line, json_line = lines(stream)
    assert "source mail failed: (psycopg.OperationalError)" in text_line
    assert "refused" in text_line.lower() and "Is the server running" in text_line
    message = json.loads(json_line)["message"]
    assert "\n" not in message and message in text_line


async def test_with_the_database_unreachable_a_failing_poll_is_one_line() -> None:
    """A real failure path: a polled source whose database is gone (``bot/service.py``)."""

    class Mail:
        name, detector = "mail", "generic"

        async def fetch(self, cursor: dict) -> None:
            raise AssertionError("not reached: the source's lock is taken first")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    service = logging.getLogger("bot.service")
    service.addHandler(handler)
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    try:
        for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
            handler.setFormatter(formatter)
            await poll_source(db, Mail(), GenericDetector(), lambda: None)  # type: ignore[arg-type]
    finally:
        service.removeHandler(handler)
        await db.dispose()
    text_line, json_line = lines(stream)  # one line per failure
    assert "WARNING bot.service: source mail failed: " in text_line
    assert "refused" in text_line.lower()
    assert json.loads(json_line)["message"] in text_line


async def test_debug_shows_the_dependency_traceback(captured) -> None:  # type: ignore[no-untyped-def]
    logger, stream, handler = captured
    logger.setLevel(logging.DEBUG)
    handler.setFormatter(logs.TextFormatter())
    exc = await refused()
    try:
        raise exc
    except Exception:
        logger.exception("database unreachable")
    assert "Traceback (most recent call last)" in stream.getvalue()
    assert len(lines(stream)) > 5


def test_credentials_are_masked_in_both_formats(captured) -> None:  # type: ignore[no-untyped-def]
    logger, stream, handler = captured
    secrets = ("xoxb-1234-5678-abcdefgh", "xapp-1-A111-222-cafe", "eyJhbGciOi.secret.part")
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        handler.setFormatter(formatter)
        logger.info(
            "calling with %s and %s, Authorization: Bearer %s, url ?api_key=k3y&x=1 "
            "password=hunter2",
            *secrets,
        )
    out = stream.getvalue()
    for secret in (*secrets, "k3y", "hunter2"):
        assert secret not in out
    assert out.count(logs.MASK) == 10
    assert "&x=1" in out  # only the value is masked


def test_configure_picks_the_format_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.delenv("FIDO_LOG_FORMAT", raising=False)
        logs.configure("info")
        assert isinstance(root.handlers[-1].formatter, logs.TextFormatter)
        assert root.level == logging.INFO
        monkeypatch.setenv("FIDO_LOG_FORMAT", "json")
        logs.configure("debug")
        assert isinstance(root.handlers[-1].formatter, logs.JsonFormatter)
        assert len([h for h in root.handlers if isinstance(h.formatter, logs.JsonFormatter)]) == 1
        monkeypatch.setenv("FIDO_LOG_FORMAT", "yaml")
        with pytest.raises(ConfigError, match="FIDO_LOG_FORMAT must be text or json"):
            logs.configure("info")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_serve_logs_json_without_secrets_or_payloads(tmp_path: Path, fake_slack: FakeSlack) -> None:
    webhook_token = "whk-7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e"
    payload_secret = "AKIAZZZZSECRETPAYLOADVALUE"
    marker = "raw-payload-marker-5d1f"
    (tmp_path / "fido.yml").write_text("enrichers: []\nactions:\n  - responder: log_only\n")
    port = free_port()
    env = serve_env(tmp_path, fake_slack, port=port, channel="C0LOGS", FIDO_LOG_FORMAT="json")
    env["FIDO_WEBHOOK_TOKEN"] = webhook_token
    secrets = [webhook_token, payload_secret, marker, env["SLACK_BOT_TOKEN"]]
    secrets.append(env["SLACK_SIGNING_SECRET"])
    process = fido("serve", env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "fido serve never became ready"
            time.sleep(0.2)
        body = json.dumps(
            {
                "id": "log-1",
                "title": "Credential use",
                "severity": "critical",
                "user": "alice",
                "aws_access_key": payload_secret,
                "note": marker,
            }
        )
        headers = {"Content-Type": "application/json"}
        refused_answer = httpx.post(
            f"{base}/webhooks/generic",
            content=body,
            headers={**headers, "Authorization": f"Bearer {webhook_token}-wrong"},
        )
        assert refused_answer.status_code == 401
        accepted = httpx.post(
            f"{base}/webhooks/generic",
            content=body,
            headers={**headers, "Authorization": f"Bearer {webhook_token}"},
        )
        assert accepted.status_code == 202
        deadline = time.monotonic() + 30
        while not fake_slack.calls("chat.postMessage"):  # enriched, triaged, sent
            assert time.monotonic() < deadline, "no card was posted"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    entries = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    assert len(entries) >= 5
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    for secret in secrets:
        assert secret not in output, secret
    messages = [e["message"] for e in entries]
    assert any("Fido listening on" in m for m in messages)
    assert any(e.get("event_id") == 1 for e in entries), messages  # triage names its event
    assert not any("color_message" in e for e in entries)


def test_request_urls_are_not_logged_at_info() -> None:
    """httpx's INFO line carries the whole URL, where a vendor key can sit in the path."""
    logs.configure("info", "text")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    logs.configure("debug", "text")
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    logs.configure("info", "text")
