"""``fido serve`` as an engineer runs it: a real process, real HTTP, SIGTERM to stop."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from bot.settings import ENV_NAMES
from tests.fixtures.servers import free_port
from tests.fixtures.slack import FakeSlack

TOKEN = "serve-test-token"


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(overrides)
    return env


def serve_env(
    tmp_path: Path, fake_slack: FakeSlack, *, port: int, channel: str, **more: str
) -> dict[str, str]:
    """What ``fido serve`` needs, on SQLite in ``tmp_path``, posting to the fake Slack."""
    return clean_env(
        FIDO_DATABASE_URL=f"sqlite:///{tmp_path / 'fido.db'}",
        FIDO_CONFIG=str(tmp_path / "fido.yml"),
        FIDO_HTTP_PORT=str(port),
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_SLACK_CHANNEL=channel,
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_SIGNING_SECRET=f"{channel}-secret",
        SLACK_API_URL=fake_slack.base_url,
        **more,
    )


def fido(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(process: subprocess.Popen[str], port: int) -> str:
    """The base URL of a ``fido serve`` once /healthz answers 200."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return base
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "fido serve did not become healthy"
        time.sleep(0.2)


def test_missing_settings_stop_serve_with_one_message_naming_them_all(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    first, *named = done.stderr.strip().splitlines()
    assert first.startswith("fido: 8 settings are missing for fido serve;")
    assert [line.split()[0] for line in named] == [
        "FIDO_WEBHOOK_TOKEN",
        "SLACK_BOT_TOKEN",
        "FIDO_SLACK_CHANNEL",
        "SLACK_SIGNING_SECRET",
        "FIDO_AD_URL",
        "FIDO_AD_BIND_DN",
        "FIDO_AD_PASSWORD",
        "FIDO_AD_BASE_DN",
    ]
    assert not (tmp_path / "fido.db").exists()  # nothing created before the check


def test_bad_policy_file_is_named(tmp_path: Path) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("thresholds:\n  ask_approval: 150\n")
    env = clean_env(
        FIDO_WEBHOOK_TOKEN=TOKEN,
        SLACK_BOT_TOKEN="xoxb-x",
        FIDO_SLACK_CHANNEL="C1",
        SLACK_SIGNING_SECRET="s",
        FIDO_CONFIG=str(policy),
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "thresholds.ask_approval" in done.stderr
    assert "xoxb-x" not in done.stderr


def test_serve_takes_an_alert_posts_a_card_and_stops_on_sigterm(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("enrichers: []\nactions:\n  - responder: log_only\n")
    port = free_port()
    env = serve_env(tmp_path, fake_slack, port=port, channel="C0SERVE")
    process = fido("serve", env=env, cwd=tmp_path)
    try:
        base = wait_healthy(process, port)
        response = httpx.post(
            f"{base}/webhooks/generic",
            content=json.dumps({"id": "s-1", "title": "Test alert", "severity": "high"}),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert response.status_code == 202
        deadline = time.monotonic() + 30
        while not fake_slack.calls("chat.postMessage"):
            assert time.monotonic() < deadline, "no card was posted"
            time.sleep(0.1)
        [post] = fake_slack.calls("chat.postMessage")
        assert post["channel"] == "C0SERVE"
        assert "Test alert" in post["text"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "shutting down" in output
    assert fake_slack.token not in output and "C0SERVE-secret" not in output


def test_serve_tails_a_log_source_on_its_schedule(tmp_path: Path, fake_slack: FakeSlack) -> None:
    log_file = tmp_path / "alerts.jsonl"
    log_file.write_text("")
    policy = tmp_path / "fido.yml"
    policy.write_text(
        "enrichers: []\nactions: [{responder: log_only}]\n"
        "sources:\n  tail:\n    type: logfile\n    detector: generic\n    interval_seconds: 0.5\n"
        f"    options: {{path: {json.dumps(str(log_file))}}}\n"
    )
    env = serve_env(tmp_path, fake_slack, port=free_port(), channel="C0TAIL")
    process = fido("serve", env=env, cwd=tmp_path)
    try:
        time.sleep(1)
        with log_file.open("a") as handle:
            handle.write(json.dumps({"id": "t-1", "title": "Tailed alert", "severity": "high"}))
            handle.write("\n")
        deadline = time.monotonic() + 30
        while not fake_slack.calls("chat.postMessage"):
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the tailed alert was never posted"
            time.sleep(0.1)
        [post] = fake_slack.calls("chat.postMessage")
        assert "Tailed alert" in post["text"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output


def _decision_of(db: Path, external_id: str) -> str | None:
    """The decision on the incident an alert joined, once the worker processed it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as connection:
            row = connection.execute(
                "SELECT incident.decision FROM event JOIN incident ON incident.id = "
                "event.incident_id WHERE event.external_id = ? AND event.status = 'done'",
                (external_id,),
            ).fetchone()
        if row is not None:
            return str(row[0])
        time.sleep(0.1)
    raise AssertionError(f"alert {external_id} was never processed")


def test_sighup_reloads_the_policy_and_keeps_it_when_the_new_one_is_invalid(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("enrichers: []\nactions: [{responder: log_only}]\n")
    port, db = free_port(), tmp_path / "fido.db"
    env = serve_env(tmp_path, fake_slack, port=port, channel="C0HUP")
    process = fido("serve", env=env, cwd=tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def alert(xid: str) -> None:
        body = json.dumps({"id": xid, "title": f"alert {xid}", "severity": "high", "host": xid})
        assert (
            httpx.post(f"{base}/webhooks/generic", content=body, headers=headers).status_code == 202
        )

    try:
        base = wait_healthy(process, port)
        alert("a")
        assert _decision_of(db, "a") == "notify"
        policy.write_text(  # notify only from 100: a high alert is now recorded only
            "enrichers: []\nactions: [{responder: log_only}]\nthresholds: {notify: 100}\n"
        )
        process.send_signal(signal.SIGHUP)
        time.sleep(1)
        alert("b")
        assert _decision_of(db, "b") == "record"
        policy.write_text("thresholds: {notify: 500}\nnonsense: 1\n")  # invalid
        process.send_signal(signal.SIGHUP)
        time.sleep(1)
        alert("c")
        assert _decision_of(db, "c") == "record"  # the previous policy still holds
        assert process.poll() is None
        assert [p["text"] for p in fake_slack.calls("chat.postMessage")] == [
            "[HIGH] 40/100 Incident #1: alert a"
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"policy reloaded from {policy}" in output
    assert "policy not reloaded, keeping the previous one" in output
    assert "thresholds.notify" in output and "nonsense" in output


def _done(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        (done,) = connection.execute("SELECT count(*) FROM event WHERE status = 'done'").fetchone()
    return int(done)


def test_kill_9_during_a_drain_then_restart_loses_nothing_and_counts_once(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("enrichers: []\nactions: [{responder: log_only}]\nworker_concurrency: 8\n")
    port, db = free_port(), tmp_path / "fido.db"
    env = serve_env(  # the fake Slack has no per-channel limit: no need to pace 300 cards
        tmp_path,
        fake_slack,
        port=port,
        channel="C0KILL",
        FIDO_REPLICA="kill-test",
        FIDO_SLACK_MESSAGES_PER_SECOND="1000",
    )
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    total = 300
    alerts = [
        {"id": f"k{i}", "title": f"alert {i}", "severity": "high", "user": f"user{i}"}
        for i in range(total)
    ]
    process = fido("serve", env=env, cwd=tmp_path)
    try:
        base = wait_healthy(process, port)
        body = json.dumps(alerts).encode()  # one delivery, stored before its 202
        response = httpx.post(f"{base}/webhooks/generic", content=body, headers=headers, timeout=60)
        assert response.status_code == 202
        deadline = time.monotonic() + 30
        while _done(db) < 20:  # well into the drain
            assert time.monotonic() < deadline, "the drain never started"
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    with sqlite3.connect(db) as connection:
        left = connection.execute("SELECT count(*) FROM event WHERE status != 'done'").fetchone()
    assert left[0] > 0, "the drain finished before the kill: nothing was tested"

    restarted = fido("serve", env=env, cwd=tmp_path)
    try:
        wait_healthy(restarted, port)
        deadline = time.monotonic() + 60
        while True:
            with sqlite3.connect(db) as connection:
                (undone,) = connection.execute(
                    "SELECT count(*) FROM event WHERE status != 'done'"
                ).fetchone()
                (unsent,) = connection.execute(
                    "SELECT count(*) FROM outbox WHERE status != 'sent'"
                ).fetchone()
            if undone == 0 and unsent == 0:
                break
            assert time.monotonic() < deadline, f"{undone} events, {unsent} messages left"
            time.sleep(0.2)
    finally:
        restarted.send_signal(signal.SIGTERM)
        output, _ = restarted.communicate(timeout=30)
    assert restarted.returncode == 0, output
    with sqlite3.connect(db) as connection:
        (events,) = connection.execute("SELECT count(*) FROM event").fetchone()
        (counted,) = connection.execute("SELECT sum(event_count) FROM incident").fetchone()
        (scored,) = connection.execute(
            "SELECT count(*) FROM audit_entry WHERE verb = 'incident.scored'"
        ).fetchone()
    assert events == counted == scored == total  # each event processed exactly once
    posts = [c["text"].rsplit(": ", 1)[1] for c in fake_slack.calls("chat.postMessage")]
    assert set(posts) == {f"alert {i}" for i in range(total)}  # every card arrived
    duplicates = {title: n for title, n in Counter(posts).items() if n > 1}
    assert all(n == 2 for n in duplicates.values())  # at most one duplicate per card…
    assert len(duplicates) <= 8  # …and only for messages in flight at the kill
