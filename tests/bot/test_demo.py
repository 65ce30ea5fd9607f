from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bot.settings import ENV_NAMES
from tests.fixtures.slack import FakeSlack


def run_demo(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def incident_text(out: str, number: int) -> str:
    """The first block printed for incident ``number``."""
    start = out.index(f"━━ Incident #{number} ")
    end = out.find("\n\n", start)
    return out[start : end if end != -1 else None]


def test_fido_demo_runs_offline_and_prints_explained_incidents(tmp_path: Path) -> None:
    out = run_demo(tmp_path)
    # the MFA-fatigue sign-in and the impossible travel (alice@…) form one incident
    assert "Incident #1 · CRITICAL · score 73/100" in out
    assert "+60  severity critical" in out
    assert "+10  user alice is a real account in the directory" in out
    assert "+3  1 more related event" in out
    assert "decision: ask_approval" in out
    assert "[ Approve: disable alice ]" in out
    assert "Administrator is a protected account" in out
    assert "action succeeded: Recorded: would disable alice" in out
    assert "[ Undo: disable alice ]" in out  # what the approver sees after the click
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_demo_lists_each_incidents_events_with_both_times(tmp_path: Path) -> None:
    first = incident_text(run_demo(tmp_path), 1)
    assert "2 events:" in first
    events = re.findall(r"• (.+?)  \(detector (\w+), id ([\w-]+)\)", first)
    assert events == [
        ("Sign-in after MFA push fatigue from an unfamiliar country", "generic", "demo-1"),
        ("Impossible travel", "generic", "demo-3"),  # the second alert's title is shown
    ]
    happened = re.findall(r"happened (\S+ \S+) UTC · Fido received it (\S+ \S+) UTC", first)
    assert [h for h, _ in happened] == ["2026-11-28 01:02:03", "2026-11-28 01:09:00"]
    assert all(received > h for h, received in happened)  # received now, not when it happened


def test_demo_names_one_account_once_with_its_directory_block_once(tmp_path: Path) -> None:
    first = incident_text(run_demo(tmp_path), 1)
    assert "user alice (also written alice@corp.example.test)" in first
    assert len(re.findall(r"^   user ", first, flags=re.M)) == 1
    assert first.count("display name: Alice Example") == 1
    assert first.count("from static_directory:") == 1


def test_demo_prints_plain_text_without_slack_formatting(tmp_path: Path) -> None:
    out = run_demo(tmp_path)
    assert "*" not in out and "`" not in out
    assert not re.search(r"(^|\s)_[^_\s][^_]*_(\s|$)", out)  # no _italic_
    assert ":warning:" not in out and "<!date" not in out


def test_demo_slack_posts_the_same_cards_to_the_channel(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_NAMES} | {
        "SLACK_BOT_TOKEN": fake_slack.token,
        "FIDO_SLACK_CHANNEL": "C0DEMO",
        "SLACK_API_URL": fake_slack.base_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo", "--slack"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    assert done.returncode == 0, done.stderr
    posted = fake_slack.calls("chat.postMessage")
    assert posted and {p["channel"] for p in posted} == {"C0DEMO"}
    texts = " ".join(str(p.get("blocks")) for p in posted)
    assert "Sign-in after MFA push fatigue" in texts
    assert fake_slack.calls("chat.update")  # the card changed after the demo approval
    assert "posted to C0DEMO" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_demo_slack_names_every_missing_setting(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo", "--slack"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    assert done.returncode == 2
    assert "SLACK_BOT_TOKEN" in done.stderr and "FIDO_SLACK_CHANNEL" in done.stderr
    assert done.stdout == ""
