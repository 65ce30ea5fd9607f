from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_fido_demo_runs_offline_and_prints_explained_incidents(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # the MFA-fatigue sign-in and the impossible travel (alice@…) form one incident
    assert "Incident #1 · CRITICAL · score 73/100" in out
    assert "+60  severity critical" in out
    assert "+10  user alice is a real account in the directory" in out
    assert "+3  1 more related event" in out
    assert "decision: ask_approval" in out
    assert "[ Approve: disable alice ]" in out
    assert "Administrator is a protected account" in out
    assert "action succeeded: Recorded: would disable alice" in out
    assert list(tmp_path.iterdir()) == []  # nothing left behind
