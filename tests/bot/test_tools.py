"""``fido parse`` and ``fido dead-letters`` as an engineer runs them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot import tools
from bot.server import build_http_app
from bot.settings import ENV_NAMES, Settings
from integrations.detectors.generic import GenericDetector
from pipeline import db as database
from pipeline import deadletters


def fido(*args: str, cwd: Path, stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_NAMES} | env
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env=environ,
        timeout=120,
    )


def test_parse_prints_normalised_events(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(
        '{"id": "a", "title": "one", "severity": "high", "user": "CORP\\\\bob",'
        ' "occurred_at": "2026-11-28T01:00:00Z"}\n{"id": "b", "title": "two"}\n'
    )
    done = fido("parse", "generic", str(alerts), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    assert [e["external_id"] for e in events] == ["a", "b"]
    first = events[0]
    assert {k: first[k] for k in ("detector", "title", "severity", "occurred_at")} == {
        "detector": "generic",
        "title": "one",
        "severity": "high",
        "occurred_at": "2026-11-28T01:00:00+00:00",
    }
    assert first["observables"]["users"] == ["CORP\\bob"]
    assert set(first["observables"]) >= {"users", "hosts", "ips", "hashes", "domains", "urls"}


def test_parse_reads_stdin_and_uses_the_policy_field_map(tmp_path: Path) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("detectors:\n  generic:\n    field_map: {user: actor.name}\n")
    done = fido(
        "parse",
        "generic",
        "-",
        cwd=tmp_path,
        FIDO_CONFIG=str(policy),
        stdin=b'{"title": "t", "actor": {"name": "carol"}}',
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["observables"]["users"] == ["carol"]


def test_parse_fails_with_one_line_reason(tmp_path: Path) -> None:
    done = fido("parse", "generic", "-", cwd=tmp_path, stdin=b'{"severity": "low"}')
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode().strip().splitlines() == [
        "fido: generic: field 'title' is required and must be a non-empty string"
    ]
    missing = fido("parse", "generic", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert missing.returncode == 2 and b"cannot read" in missing.stderr


async def test_unparsable_webhook_is_kept_and_retried_after_a_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    database.upgrade(url)
    db = database.Database(url)
    strict = build_http_app(
        db=db, detectors={"generic": GenericDetector()}, webhook_token=SecretStr("t")
    )
    body = b'{"rule": {"name": "Mapped title"}, "actor": "dave"}'
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=strict), base_url="http://fido.test"
    ) as client:
        response = await client.post(
            "/webhooks/generic",
            content=body,
            headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        )
    assert response.status_code == 422
    assert "'title' is required" in response.json()["detail"]
    [letter] = await deadletters.listing(db)
    assert (letter.id, letter.body) == (response.json()["dead_letter"], body)
    await db.dispose()

    listed = fido("dead-letters", cwd=tmp_path, FIDO_DATABASE_URL=url)
    assert listed.returncode == 0 and b"'title' is required" in listed.stdout
    still = fido("dead-letters", "retry", cwd=tmp_path, FIDO_DATABASE_URL=url)
    assert still.returncode == 1 and b"failed" in still.stdout

    fixed = tmp_path / "fido.yml"  # the "parser fix": map the vendor's fields
    fixed.write_text("detectors:\n  generic:\n    field_map: {title: rule.name, user: actor}\n")
    retried = fido(
        "dead-letters", "retry", cwd=tmp_path, FIDO_DATABASE_URL=url, FIDO_CONFIG=str(fixed)
    )
    assert retried.returncode == 0, retried.stdout
    assert b"parsed: 1 new events" in retried.stdout
    assert fido("dead-letters", cwd=tmp_path, FIDO_DATABASE_URL=url).stdout.strip() == (
        b"no dead letters"
    )


def test_lookup_on_the_command_line(tmp_path: Path) -> None:
    policy = tmp_path / "fido.yml"
    policy.write_text("enrichers: []\n")
    done = fido(
        "lookup",
        "ip",
        "203.0.113.9",
        "--json",
        cwd=tmp_path,
        FIDO_CONFIG=str(policy),
        FIDO_DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "kind": "ip",
        "value": "203.0.113.9",
        "results": {},
        "history": [],
    }
    bad = fido("lookup", "ip", "nope", cwd=tmp_path, FIDO_CONFIG=str(policy))
    assert bad.returncode == 1 and b"nope is not an IP address" in bad.stderr


def test_lookup_statuses_are_truthful(tmp_path: Path) -> None:
    """An unreachable directory is an error, and one that does not look up a kind of value
    says it was skipped — never "ok" with nothing in it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    directory = {
        "FIDO_AD_URL": f"ldaps://127.0.0.1:{closed}",
        "FIDO_AD_BIND_DN": "CN=fido,DC=corp",
        "FIDO_AD_PASSWORD": "secret-password",
        "FIDO_AD_BASE_DN": "DC=corp",
        "FIDO_AD_TIMEOUT": "2",
        "FIDO_DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}",
    }
    user = fido("lookup", "user", "alice", "--json", cwd=tmp_path, **directory)
    assert user.returncode == 0, user.stderr
    result = json.loads(user.stdout)["results"]["active_directory"]
    assert result["status"] == "error" and "cannot connect" in result["error"]
    assert b"secret-password" not in user.stdout + user.stderr
    ip = fido("lookup", "ip", "10.1.2.3", "--json", cwd=tmp_path, **directory)
    result = json.loads(ip.stdout)["results"]["active_directory"]
    assert result["status"] == "skipped"
    assert result["reason"] == "it does not look up ip values"
    text = fido("lookup", "ip", "10.1.2.3", cwd=tmp_path, **directory).stdout.decode()
    assert "active_directory: skipped, it does not look up ip values" in text
    assert "no enrichers enabled" not in text and "*" not in text and "`" not in text


def test_reading_commands_never_leave_an_empty_database_behind(tmp_path: Path) -> None:
    for args in (("incident", "1"), ("dead-letters",), ("dead-letters", "retry")):
        done = fido(*args, cwd=tmp_path)
        assert done.returncode == 2, args
        assert b"no database at" in done.stderr and b"FIDO_DATABASE_URL" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_terminal_text_drops_mrkdwn_markers() -> None:
    from slack_sdk.models.blocks import SectionBlock
    from slack_sdk.models.blocks.basic_components import MarkdownTextObject

    from bot.tools import terminal_text

    text = "*Score: 73/100* · _top reasons_ `alice` *User* `ask_approval` :warning: a_b *x"
    blocks = [SectionBlock(text=MarkdownTextObject(text=text))]
    assert terminal_text(blocks) == "Score: 73/100 · top reasons alice User ask_approval ! a_b *x"


async def _closed_incident(url: str) -> None:
    """Incident 1: an approved action, then closed as a true positive."""
    from pipeline.engine import Engine
    from pipeline.ingest import ingest
    from pipeline.models import CloseVerdict
    from pipeline.policy import ActionPolicy, Policy
    from tests.pipeline.fakes import DirectoryEnricher, LockResponder

    database.upgrade(url)
    db = database.Database(url)
    engine = Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="test_lock")]),
        enrichers=[DirectoryEnricher({"alice": {"display_name": "Alice"}})],
        responders={"test_lock": LockResponder()},
        approvers=["UANALYST"],
    )
    for n, title in ((1, "Odd login"), (2, "Odd login <again>")):
        body = {"id": str(n), "title": title, "severity": "critical", "user": "alice"}
        async with db.session() as session:
            await ingest(
                session=session, detector=GenericDetector(), body=json.dumps(body).encode()
            )
        await engine.drain()
    await engine.incidents.approve(
        incident_id=1, responder="test_lock", target="alice", actor="UANALYST"
    )
    await engine.incidents.close(
        incident_id=1, verdict=CloseVerdict.true_positive, actor="UANALYST", reason="contained"
    )
    await db.dispose()


async def _add_action(url: str, *, responder: str, target: str) -> None:
    from pipeline.models import Action

    db = database.Database(url)
    async with db.session() as session:
        session.add(
            Action(
                incident_id=1,
                responder=responder,
                target=target,
                idempotency_key=f"test:{responder}:{target}",
                requested_by="UANALYST",
                status="succeeded",
                result="sent",
            )
        )
        await session.commit()
    await db.dispose()


async def test_incident_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    await _closed_incident(url)

    done = fido("incident", "1", "--json", cwd=tmp_path, FIDO_DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert {k: shown[k] for k in ("id", "title", "status", "verdict", "closed_by")} == {
        "id": 1,
        "title": "Odd login",
        "status": "closed",
        "verdict": "true_positive",
        "closed_by": "UANALYST",
    }
    assert shown["close_reason"] == "contained" and shown["closed_at"].endswith("+00:00")
    assert shown["score"] == sum(line["points"] for line in shown["breakdown"])
    assert {"points": 60, "reason": "severity critical", "component": "threat"} in shown[
        "breakdown"
    ]
    assert {line["component"] for line in shown["breakdown"]} >= {"threat", "user", "correlation"}
    assert shown["decision"] == "ask_approval" and shown["decision_reason"].startswith("score ")
    assert [(e["id"], e["title"]) for e in shown["events"]] == [
        (1, "Odd login"),
        (2, "Odd login <again>"),
    ]
    [action] = shown["actions"]
    assert (action["responder"], action["target"], action["status"]) == (
        "test_lock",
        "alice",
        "succeeded",
    )
    assert action["approved_by"] == "UANALYST"
    kinds = [(m["kind"], m["what"]) for m in shown["timeline"]]  # events, actions and clicks
    assert ("event", "Odd login <again>") in kinds
    assert any(kind == "action" for kind, _ in kinds)
    assert any(kind == "click" and "close" in what for kind, what in kinds), kinds

    text = fido("incident", "#1", cwd=tmp_path, FIDO_DATABASE_URL=url)
    assert text.returncode == 2  # not a number: typer's usage error
    # the text draws each action with its responder's label, from the responder as fido
    # serve builds it: here a webhook's ``label`` option
    await _add_action(url, responder="webhook", target="alice")
    policy = tmp_path / "hook.yml"
    policy.write_text(
        "actions:\n  - responder: webhook\n    options:\n"
        "      url: https://127.0.0.1:9/hook\n      secret_env: FIDO_TEST_HOOK_SECRET\n"
        "      label: isolate\n"
    )
    text = fido(
        "incident",
        "1",
        cwd=tmp_path,
        FIDO_DATABASE_URL=url,
        FIDO_CONFIG=str(policy),
        FIDO_TEST_HOOK_SECRET="s3cret",
    )
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert "*isolate* `alice` · *succeeded*" in out
    assert out.splitlines()[0] == "🔴 CRITICAL · Odd login"
    assert f"*Score: {shown['score']}/100* · every point\n*Threat* +60\n" in out
    assert "• +60 severity critical" in out and "• +10 user alice is a real account" in out
    assert "*Timeline* · 2 events" in out and "🔴 Odd login <again>" in out
    assert "✅ Closed as true positive by @UANALYST · " in out and " · contained" in out
    assert "run test_lock on* `alice` · *succeeded* · approved by @UANALYST" in out
    assert "actions, clicks and decisions" in out  # the whole timeline follows the card

    missing = fido("incident", "99", cwd=tmp_path, FIDO_DATABASE_URL=url)
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == "fido: there is no incident 99"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_retrying_dead_letters_reports_progress_on_a_terminal_only(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    database.upgrade(url)
    db = database.Database(url)
    try:
        async with db.session() as session:
            for n in range(3):
                deadletters.keep(session, detector="generic", body=b"{}", error=f"bad {n}")
            await session.commit()
        seen: list[tuple[int, int]] = []
        outcomes = await deadletters.retry(
            db, detectors={"generic": GenericDetector()}, progress=lambda *p: seen.append(p)
        )
    finally:
        await db.dispose()
    assert len(outcomes) == 3 and seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    shown = Terminal()
    with tools.Progress("retrying dead letters", shown) as bar:
        for done in range(4):
            bar(done, 3)
    assert "retrying dead letters" in shown.getvalue() and "100%" in shown.getvalue()
    piped = io.StringIO()  # a pipe or a log: only the result, no bar
    with tools.Progress("retrying dead letters", piped) as bar:
        bar(0, 3)
        bar(3, 3)
    assert piped.getvalue() == ""


LARGE = 2_500  # records: over tools.PROGRESS_FROM


@pytest.mark.parametrize(
    ("detector", "line"),
    [
        ("generic", '{{"id": "{n}", "title": "t{n}"}}'),
        ("suricata", '{{"event_type": "alert", "flow_id": {n}, "alert": {{"signature": "s"}}}}'),
        ("fail2ban", "2026-11-28 01:02:03,456 fail2ban.actions [1]: NOTICE [sshd] Ban 192.0.2.{m}"),
        ("clamav", "Sat Nov 28 01:02:03 2026 -> /tmp/x{n}: Eicar-Test FOUND"),
    ],
)
def test_parsing_a_large_file_reports_progress(detector: str, line: str) -> None:
    """JSON and log-line detectors alike report every hundredth record of a large file,
    from the first to the last; a small file is too quick for a bar."""
    body = "\n".join(line.format(n=n, m=n % 250) for n in range(LARGE)).encode()
    seen: list[tuple[int, int]] = []
    parsed = json.loads(
        tools.parse(Settings(_env_file=None), detector, body, progress=lambda *p: seen.append(p))
    )  # type: ignore[call-arg]
    assert len(parsed) == LARGE
    assert seen[0] == (0, LARGE) and seen[-1] == (LARGE, LARGE)
    assert 100 <= len(seen) <= 102 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    small: list[tuple[int, int]] = []
    tools.parse(
        Settings(_env_file=None),
        detector,
        b"\n".join(body.splitlines()[:5]),
        progress=lambda *p: small.append(p),
    )  # type: ignore[call-arg]
    assert small == []


def test_parse_shows_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    body = "\n".join(f'{{"id": "{n}", "title": "t"}}' for n in range(LARGE)).encode()
    shown = Terminal()
    with tools.Progress("parsing", shown) as bar:
        tools.parse(Settings(_env_file=None), "generic", body, progress=bar)  # type: ignore[call-arg]
    assert "parsing" in shown.getvalue() and "100%" in shown.getvalue()
    piped = fido("parse", "generic", "-", cwd=tmp_path, stdin=body)
    assert piped.returncode == 0 and piped.stderr == b""
    assert len(json.loads(piped.stdout)) == LARGE
