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


def test_directory_settings_reach_the_ad_client(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        FIDO_AD_URL="ldap://127.0.0.1",
        FIDO_AD_BIND_DN="CN=fido",
        FIDO_AD_PASSWORD="pw",
        FIDO_AD_BASE_DN="DC=corp",
        FIDO_AD_START_TLS="true",
        FIDO_AD_TIMEOUT="3",
    )
    directory = Wiring(settings, Policy(), environ={}).directory
    assert (directory.config.start_tls, directory.config.timeout) == (True, 3.0)
    missing_ca = settings.model_copy(update={"ad_ca_file": tmp_path / "nope.pem"})
    with pytest.raises(ConfigError, match="FIDO_AD_"):
        Wiring(missing_ca, Policy(), environ={}).directory  # noqa: B018
