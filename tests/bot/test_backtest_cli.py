"""``fido backtest`` as an engineer runs it, on a small SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot import tools
from bot.settings import ENV_NAMES, Settings
from integrations.responders.ad_disable_account import ADDisableAccount
from integrations.responders.log_only import LogOnlyResponder
from pipeline import db as database
from pipeline.decide import decide
from pipeline.errors import ConfigError, InputError
from pipeline.models import Incident
from pipeline.policy import ActionPolicy, Policy
from pipeline.score import score

AD_ENV = {
    "FIDO_AD_URL": "ldaps://127.0.0.1:9",
    "FIDO_AD_BIND_DN": "CN=fido,DC=corp",
    "FIDO_AD_PASSWORD": "secret-password",
    "FIDO_AD_BASE_DN": "DC=corp",
}

NEW_POLICY = """\
thresholds: {ask_approval: 50, auto_act: 80}
scoring:
  user: {in_directory: 20}
actions:
  - responder: log_only
"""


def fido(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_NAMES} | env
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environ | {"COLUMNS": "200"},
        timeout=120,
    )


async def seed(url: str) -> None:
    """Three incidents scored and decided under the default policy, as triage stores them."""
    database.upgrade(url)
    db = database.Database(url)
    now = datetime.now(UTC)
    policy = Policy()
    rows: list[dict[str, Any]] = [
        {"severity": "critical", "user": "alice", "created_at": now - timedelta(hours=1)},
        {"severity": "high", "user": "bob", "created_at": now - timedelta(days=40)},
        {"severity": "medium", "user": None, "created_at": now - timedelta(days=2)},
    ]
    async with db.session() as session:
        for row in rows:
            user = row.pop("user")
            incident = Incident(
                title="alert",
                updated_at=row["created_at"],
                observables={"users": [user] if user else []},
                enrichment={
                    "active_directory": {
                        "status": "ok",
                        "facts": {f"user:{user}": {"found": True}} if user else {},
                    }
                },
                event_count=1,
                **row,
            )
            incident.score, _ = score(incident, policy)
            verdict = decide(incident, policy, {"ad_disable_account": ADDisableAccount})
            incident.decision = verdict.decision.value
            session.add(incident)
        await session.commit()
    await db.dispose()


@pytest.fixture
async def workdir(tmp_path: Path) -> Path:
    await seed(f"sqlite:///{tmp_path / 'fido.db'}")
    (tmp_path / "new.yml").write_text(NEW_POLICY)
    return tmp_path


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    url = f"sqlite:///{workdir / 'fido.db'}"
    return fido("backtest", *args, cwd=workdir, FIDO_DATABASE_URL=url)


def test_json_is_one_object_with_every_change(workdir: Path) -> None:
    done = run(workdir, "--policy", "new.yml", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "policy": "new.yml",
        "since": None,
        "incidents": 3,
        "changed": [
            # critical 60 + directory 20 = 80: critical, and log_only acts on alice at once
            {"incident": 1, "score": [70, 80], "decision": ["ask_approval", "auto_act"]},
            {"incident": 2, "score": [50, 60], "decision": ["notify", "ask_approval"]},
        ],
        "band_changes": 1,
        "decision_changes": 2,
        "newly_auto": 1,
        "no_longer_auto": 0,
        "transitions": {
            "ask_approval": {"auto_act": 1},
            "notify": {"ask_approval": 1, "notify": 1},
        },
    }


def test_since_limits_to_recent_incidents(workdir: Path) -> None:
    done = run(workdir, "--policy", "new.yml", "--since", "30d", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    since = datetime.fromisoformat(report["since"])
    assert timedelta(days=30) <= datetime.now(UTC) - since < timedelta(days=30, minutes=5)
    assert report["incidents"] == 2
    assert [c["incident"] for c in report["changed"]] == [1]


def test_text_summary_matrix_and_changes(workdir: Path) -> None:
    done = run(workdir, "--policy", "new.yml")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        "new.yml: 3 incidents stored",
        "  score band changes              1",
        "  decision changes                2",
        "  newly auto-actioned             1",
        "  no longer auto-actioned         0",
    ]
    assert "decisions, stored (rows) → new (columns)" in lines
    assert [line.split() for line in lines if line.startswith(("  notify", "  ask_"))] == [
        ["notify", "0", "1", "1", "0"],
        ["ask_approval", "0", "0", "0", "1"],
    ]
    assert lines[-3:] == [
        "changed incidents (the first 2 of 2)",
        "  #1        score  70 → 80  high → critical      ask_approval → auto_act",
        "  #2        score  50 → 60  high → high          notify → ask_approval",
    ]
    assert done.stderr == ""  # no progress bar when stderr is not a terminal


def test_bad_since_is_a_usage_error(workdir: Path) -> None:
    done = run(workdir, "--policy", "new.yml", "--since", "30 days", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Invalid value for '--since'" in done.stderr
    assert "'30 days' is not a duration" in done.stderr


def test_invalid_policy_lists_its_problems_and_exits_2(workdir: Path) -> None:
    (workdir / "bad.yml").write_text("thresholds: {notify: 200}\nscoring: {users: {}}\n")
    done = run(workdir, "--policy", "bad.yml", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "fido: bad.yml is not a valid policy:"
    assert lines[1] == "bad.yml:1:22: thresholds.notify: Input should be less than or equal to 100"
    assert lines[2].startswith("bad.yml:2:11: scoring.users: unknown key")
    assert len(lines) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert tools.duration(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "0d", "-1d", "1.5h", "3y", "30 days", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InputError, match="is not a duration"):
        tools.duration(text)


def test_responder_targets_are_the_responders_as_serve_builds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule's options decide what a responder acts on, as in ``fido serve``."""
    for name, value in AD_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FIDO_TEST_HOOK_SECRET", "s3cret")
    policy = Policy(
        actions=[
            ActionPolicy(responder="ad_disable_account"),
            ActionPolicy(responder="log_only", options={"target_kind": "host"}),
            ActionPolicy(
                responder="webhook",
                options={
                    "url": "https://127.0.0.1:9/hook",
                    "secret_env": "FIDO_TEST_HOOK_SECRET",
                    "target_kind": "host",
                    "label": "isolate",
                },
            ),
        ]
    )
    targets = tools.responder_targets(Settings(), policy)
    assert isinstance(targets["ad_disable_account"], ADDisableAccount)  # nothing connected
    assert isinstance(targets["log_only"], LogOnlyResponder)
    assert {name: t.target_kind for name, t in targets.items()} == {
        "ad_disable_account": "user",
        "log_only": "host",
        "webhook": "host",
    }
    with pytest.raises(ConfigError, match="unknown responder 'nope'"):
        tools.responder_targets(Settings(), Policy(actions=[ActionPolicy(responder="nope")]))
    monkeypatch.delenv("FIDO_TEST_HOOK_SECRET")
    with pytest.raises(ConfigError, match="FIDO_TEST_HOOK_SECRET is not set"):
        tools.responder_targets(Settings(), policy)


def test_a_host_rule_proposes_nothing_on_users(workdir: Path) -> None:
    """log_only told to act on hosts: the stored incidents name users only, so nothing is
    acted on automatically any more (a responder built without its options acted on
    alice)."""
    host_rule = "  - responder: log_only\n    options: {target_kind: host}\n"
    (workdir / "hosts.yml").write_text(NEW_POLICY.replace("  - responder: log_only\n", host_rule))
    done = run(workdir, "--policy", "hosts.yml", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["newly_auto"] == 0
    assert "auto_act" not in report["transitions"].get("ask_approval", {})


def test_a_missing_secret_of_a_responder_is_named(workdir: Path) -> None:
    (workdir / "hook.yml").write_text(
        "actions:\n  - responder: webhook\n    options:\n"
        "      url: https://127.0.0.1:9/hook\n      secret_env: FIDO_TEST_HOOK_SECRET\n"
    )
    done = run(workdir, "--policy", "hook.yml", "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert "FIDO_TEST_HOOK_SECRET is not set" in done.stderr
