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


async def test_policy_lookups_are_built_wrapped_and_screened(db) -> None:  # type: ignore[no-untyped-def]
    """virustotal from the policy, with its key from the environment, behind the privacy
    screen and cache: only the public IP reaches the (documented-shape) API, once."""
    import httpx

    from integrations.enrichers.virustotal import VirusTotalLookup
    from pipeline.lookups.enricher import LookupEnricher
    from pipeline.observables import Observables
    from tests.integrations.enrichers.external.vendor import payload

    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=payload("virustotal/ip_address.json"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as http:
        policy = Policy.model_validate(
            {
                "enrichers": ["virustotal"],
                "enricher_options": {"virustotal": {"api_key_env": "VT_KEY"}},
                "privacy": {"internal_domains": ["corp.example"]},
            }
        )
        built = Wiring(
            Settings(_env_file=None),
            policy,
            environ={"VT_KEY": "k-1"},  # type: ignore[call-arg]
            http=http,
        ).enrichers(db)
        [enricher] = built
        assert isinstance(enricher, LookupEnricher)
        assert isinstance(enricher.lookup, VirusTotalLookup)
        observables = Observables(ips=["10.1.2.3", "8.8.8.8"], domains=["intranet.corp.example"])
        first = await enricher.enrich(observables)
        again = await enricher.enrich(observables)
    assert [r.url.path for r in seen] == ["/api/v3/ip_addresses/8.8.8.8"]
    assert seen[0].headers["x-apikey"] == "k-1"
    assert first["ip:10.1.2.3"] == {"withheld": "internal"}
    assert first["domain:intranet.corp.example"] == {"withheld": "internal"}
    assert first["ip:8.8.8.8"] == again["ip:8.8.8.8"]
    assert "verdict" in first["ip:8.8.8.8"]
    with pytest.raises(ConfigError, match="VT_KEY is not set"):
        Wiring(Settings(_env_file=None), policy, environ={}).enrichers(db)  # type: ignore[call-arg]
