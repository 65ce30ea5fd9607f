"""Start-up wiring from the policy: sources get their detector and sensible defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings
from bot.wiring import Wiring
from pipeline.errors import ConfigError
from pipeline.policy import Policy


def wiring(policy: dict, **environ: str) -> Wiring:
    return Wiring(
        Settings(_env_file=None),
        Policy.model_validate(policy),  # type: ignore[call-arg]
        environ=environ,
    )


@pytest.mark.parametrize(
    ("detector", "kept", "skipped"),
    [
        (
            "clamav",
            "Sat Nov 28 01:02:03 2026 -> /srv/x.exe: Eicar-Test FOUND",
            "Sat Nov 28 01:02:03 2026 -> /srv/ok.txt: OK",
        ),
        (
            "fail2ban",
            "2026-11-28 01:02:03,456 fail2ban.actions [12]: NOTICE [sshd] Ban 192.0.2.4",
            "2026-11-28 01:02:03,456 fail2ban.filter [12]: INFO [sshd] Found 192.0.2.4",
        ),
    ],
)
def test_log_tail_passes_only_lines_its_detector_reads(
    tmp_path: Path, detector: str, kept: str, skipped: str
) -> None:
    [(source, parser, interval)] = wiring(
        {
            "sources": {
                "tail": {
                    "type": "logfile",
                    "detector": detector,
                    "interval_seconds": 5,
                    "options": {"path": str(tmp_path / "x.log")},
                }
            }
        }
    ).sources()
    assert (parser.name, interval) == (detector, 5)
    assert source.payload(kept.encode()) == kept.encode()  # type: ignore[attr-defined]
    assert source.payload(skipped.encode()) is None  # type: ignore[attr-defined]


def test_explicit_pattern_wins(tmp_path: Path) -> None:
    [(source, _, _)] = wiring(
        {
            "sources": {
                "tail": {
                    "type": "logfile",
                    "detector": "clamav",
                    "options": {"path": str(tmp_path / "x.log"), "pattern": "Eicar"},
                }
            }
        }
    ).sources()
    assert source.payload(b"anything Eicar") == b"anything Eicar"  # type: ignore[attr-defined]


def test_bad_source_options_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sources.tail"):
        wiring(
            {"sources": {"tail": {"type": "logfile", "detector": "clamav", "options": {"nope": 1}}}}
        ).sources()
    with pytest.raises(ConfigError, match="unknown source 'nosuch'"):
        wiring({"sources": {"x": {"type": "nosuch", "detector": "generic"}}}).sources()
