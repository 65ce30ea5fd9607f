"""Start-up wiring: every plugin built the one way, from the policy's options and the context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.settings import Settings
from bot.wiring import Wiring, process_environ
from integrations.enrichers.active_directory import ActiveDirectoryEnricher
from integrations.responders.ad_disable_account import ADDisableAccount
from pipeline.errors import ConfigError
from pipeline.lookups.enricher import LookupEnricher
from pipeline.policy import Policy
from tests.integrations.test_plugin_options import (
    AD_ENVIRON,
    ROOT,
    NoExample,
    example,
    plugin_names,
    secrets_for,
)

EXAMPLE = ROOT / "fido.example.yml"


def wiring(policy: dict[str, Any], http: Any = None, **environ: str) -> Wiring:
    return Wiring(
        Settings(_env_file=None),  # type: ignore[call-arg]
        Policy.model_validate(policy),
        environ=environ,
        http=http,
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


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
    """The detector's declared ``line_pattern`` is the tail's default, whatever its name."""
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
    assert (parser.name, interval, source.name, source.detector) == (detector, 5, "tail", detector)
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


def test_a_sources_detector_is_built_with_its_policy_options(tmp_path: Path) -> None:
    policy = {
        "detectors": {"panos": {"enabled": False, "options": {"timezone": "Europe/Paris"}}},
        "sources": {
            "fw": {"type": "logfile", "detector": "panos", "options": {"path": str(tmp_path)}}
        },
    }
    [(_, parser, _)] = wiring(policy).sources()
    assert str(parser.zone) == "Europe/Paris"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {
                "sources": {
                    "tail": {
                        "type": "logfile",
                        "detector": "clamav",
                        "options": {"path": "/x", "nope": 1},
                    }
                }
            },
            r"^source tail \(logfile\): unknown option 'nope'$",
        ),
        (
            {"sources": {"tail": {"type": "logfile", "detector": "clamav"}}},
            r"^source tail \(logfile\): option 'path' is required$",
        ),
        (
            {"sources": {"x": {"type": "nosuch", "detector": "generic"}}},
            r"^unknown source 'nosuch' \(known: crowdstrike_api, defender_xdr_api, imap, logfile, ",
        ),
        (
            {"detectors": {"clamav": {"options": {"severity": "scary"}}}},
            r"^detector clamav: option 'severity': Input should be 'informational', 'low'",
        ),
        (
            {"detectors": {"panos": {"options": {"timezone": "Mars/Olympus_Mons"}}}},
            r"^detector panos: option 'timezone': unknown time zone 'Mars/Olympus_Mons'$",
        ),
        (
            {"detectors": {"okta": {"field_map": {"user": "actor.id"}}}},
            r"^detector okta: unknown option 'field_map'$",
        ),
        (
            {"detectors": {"generic": {"field_map": {"nonsense": "a.b"}}}},
            r"^detector generic: option 'field_map': names unknown fields: nonsense",
        ),
        (
            {"enrichers": ["virustotal"], "enricher_options": {"virustotal": {"api_kye_env": "K"}}},
            r"^enricher virustotal: unknown option 'api_kye_env', did you mean 'api_key_env'\?;"
            r" option 'api_key_env' is required$",
        ),
        (
            {"enrichers": ["nosuch"]},
            r"^unknown enricher 'nosuch' \(known: .*active_directory.*virustotal",
        ),
        (
            {
                "actions": [
                    {
                        "responder": "openvpn_kill_session",
                        "options": {"managment_port": 7505},
                    }
                ]
            },
            r"^responder openvpn_kill_session: unknown option 'managment_port', did you mean"
            r" 'management_port'\?; option 'management_port' is required$",
        ),
        (
            {"actions": [{"responder": "log_only", "options": {"target_kind": "planet"}}]},
            r"^responder log_only: option 'target_kind': Input should be 'user', 'host'",
        ),
    ],
)
def test_bad_options_name_the_plugin_and_the_key(policy: dict[str, Any], message: str) -> None:
    built = wiring({"enrichers": [], "actions": [], **policy})
    with pytest.raises(ConfigError, match=message):
        built.detectors()
        built.sources()
        built.responders()
        built.enrichers(None)  # type: ignore[arg-type]


def test_two_rules_cannot_give_one_responder_different_options() -> None:
    rule = {"responder": "log_only", "options": {"target_kind": "host"}}
    same = Policy.model_validate({"actions": [rule, {**rule, "require_directory_match": False}]})
    assert wiring(same.model_dump()).responders()["log_only"].target_kind == "host"
    with pytest.raises(ValueError, match="actions 0 and 1 both name log_only with different"):
        Policy.model_validate({"actions": [rule, {"responder": "log_only"}]})


def test_secrets_come_from_the_variables_the_policy_names() -> None:
    policy = {
        "actions": [
            {
                "responder": "openvpn_kill_session",
                "options": {"management_port": 7505, "password_env": "VPN_PW"},
            }
        ]
    }
    responder = wiring(policy, VPN_PW="s3cret").responders()["openvpn_kill_session"]
    endpoint = responder.endpoint  # type: ignore[attr-defined]
    assert endpoint.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(endpoint)
    with pytest.raises(ConfigError, match="^responder openvpn_kill_session: VPN_PW is not set"):
        wiring(policy).responders()


def test_the_directory_is_one_client_from_the_fido_ad_settings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {**AD_ENVIRON, "FIDO_AD_URL": "ldap://127.0.0.1", "FIDO_AD_TIMEOUT": "3"}
    built = wiring({"actions": [{"responder": "ad_disable_account"}]}, **environ)
    with caplog.at_level(logging.WARNING):
        responder = built.responders()["ad_disable_account"]
        [enricher] = built.enrichers(None)  # type: ignore[arg-type]
    assert isinstance(responder, ADDisableAccount)
    assert isinstance(enricher, ActiveDirectoryEnricher)
    assert enricher.directory is responder.directory  # one shared, lazily bound connection
    config = responder.directory.config
    assert (config.url, config.start_tls, config.timeout, config.page_size) == (
        "ldap://127.0.0.1",
        False,
        3.0,
        500,
    )
    assert "plain ldap:// without FIDO_AD_START_TLS" in caplog.text
    assert AD_ENVIRON["FIDO_AD_PASSWORD"] not in repr(config) + caplog.text


def test_missing_directory_settings_are_all_named_at_once() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^responder ad_disable_account: FIDO_AD_URL, FIDO_AD_BIND_DN, FIDO_AD_PASSWORD,"
        r" FIDO_AD_BASE_DN are not set \(see \.env\.example\)$",
    ):
        wiring({}).responders()
    with pytest.raises(ConfigError, match=r"^enricher active_directory: FIDO_AD_PASSWORD is not"):
        wiring({}, **{**AD_ENVIRON, "FIDO_AD_PASSWORD": ""}).enrichers(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"FIDO_AD_URL": "http://dc"}, r"FIDO_AD_URL: must be an ldap:// or ldaps:// URL"),
        ({"FIDO_AD_CA_FILE": "/nope.pem"}, r"FIDO_AD_CA_FILE: /nope.pem is not a readable PEM"),
        ({"FIDO_AD_TIMEOUT": "soon"}, r"FIDO_AD_TIMEOUT: Input should be a valid number"),
        (
            {"FIDO_AD_URL": "ldaps://dc", "FIDO_AD_START_TLS": "true"},
            r"FIDO_AD_\*: start_tls is for ldap:// URLs",
        ),
    ],
)
def test_wrong_directory_settings_are_named(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        wiring({}, **{**AD_ENVIRON, **changes}).responders()


def test_the_directory_settings_may_sit_in_dot_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for Settings: .env is read, the process environment wins."""
    for name in AD_ENVIRON:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "".join(f"{name}={value}\n" for name, value in AD_ENVIRON.items())
    )
    monkeypatch.setenv("FIDO_AD_TIMEOUT", "7")
    assert process_environ()["FIDO_AD_BIND_DN"] == AD_ENVIRON["FIDO_AD_BIND_DN"]
    built = Wiring(Settings(_env_file=None), Policy())  # type: ignore[call-arg]
    responder = built.responders()["ad_disable_account"]
    assert responder.directory.config.timeout == 7.0  # type: ignore[attr-defined]


async def test_policy_lookups_are_built_wrapped_and_screened(db) -> None:  # type: ignore[no-untyped-def]
    """virustotal from the policy, with its key from the environment, behind the privacy
    screen and cache: only the public IP reaches the (documented-shape) API, once."""
    from integrations.enrichers.virustotal import VirusTotalLookup
    from pipeline.observables import Observables
    from tests.integrations.enrichers.external.vendor import payload

    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=payload("virustotal/ip_address.json"))

    policy = {
        "enrichers": ["virustotal"],
        "enricher_options": {"virustotal": {"api_key_env": "VT_KEY"}},
        "privacy": {"internal_domains": ["corp.example"]},
    }
    async with httpx.AsyncClient(transport=httpx.MockTransport(api)) as http:
        [enricher] = wiring(policy, http, VT_KEY="k-1").enrichers(db)
        assert isinstance(enricher, LookupEnricher)
        assert isinstance(enricher.lookup, VirusTotalLookup)
        observables = Observables(ips=["10.1.2.3", "8.8.8.8"], domains=["intranet.corp.example"])
        first = await enricher.enrich(observables)
        again = await enricher.enrich(observables)
        with pytest.raises(ConfigError, match="^enricher virustotal: VT_KEY is not set"):
            wiring(policy, http).enrichers(db)
    assert [r.url.path for r in seen] == ["/api/v3/ip_addresses/8.8.8.8"]
    assert seen[0].headers["x-apikey"] == "k-1"
    assert first["ip:10.1.2.3"] == {"withheld": "internal"}
    assert first["domain:intranet.corp.example"] == {"withheld": "internal"}
    assert first["ip:8.8.8.8"] == again["ip:8.8.8.8"]
    assert "verdict" in first["ip:8.8.8.8"]


def documented(kind: str) -> list[str]:
    """The plugins of ``kind`` with a documented example (those without one fail
    ``tests/integrations/test_plugin_options.py``)."""
    names = []
    for name in plugin_names(kind):
        try:
            example(kind, name)
        except NoExample:
            continue
        names.append(name)
    return names


def every_plugin_policy() -> tuple[dict[str, Any], dict[str, str]]:
    """A policy naming every registered plugin with its documented example options, and
    the environment its secrets (and the directory) need."""
    environ = dict(AD_ENVIRON)
    detectors = {}
    for name in documented("detector"):
        detectors[name] = {"options": example("detector", name)}
        environ |= secrets_for("detector", name)
    sources = {}
    for name in documented("source"):
        sources[f"{name}_1"] = {"type": name, "detector": "generic"}
        sources[f"{name}_1"]["options"] = example("source", name)
        environ |= secrets_for("source", name)
    enrichers = documented("enricher") + documented("lookup")
    options = {}
    for kind, name in [("enricher", n) for n in documented("enricher")] + [
        ("lookup", n) for n in documented("lookup")
    ]:
        options[name] = example(kind, name)
        environ |= secrets_for(kind, name)
    actions = []
    for name in documented("responder"):
        actions.append({"responder": name, "options": example("responder", name)})
        environ |= secrets_for("responder", name)
    policy = {
        "detectors": detectors,
        "sources": sources,
        "enrichers": enrichers,
        "enricher_options": options,
        "actions": actions,
    }
    return policy, environ


async def test_one_loop_builds_a_policy_using_every_plugin(
    db, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """No plugin is known to the wiring by name: each is built from its options alone."""
    monkeypatch.chdir(ROOT)  # examples name files of the repository (the demo's inventory)
    policy, environ = every_plugin_policy()
    built = wiring(policy, http, **environ)
    assert set(built.detectors()) == set(plugin_names("detector"))
    assert {source.name for source, _, _ in built.sources()} == set(policy["sources"])
    assert {e.name for e in built.enrichers(db)} == set(policy["enrichers"])
    responders = built.responders()
    assert set(responders) == set(documented("responder"))
    for name, responder in responders.items():
        assert responder.name == name and responder.label
        assert isinstance(responder.plan("CORP\\jdoe", {"display_name": "John Doe"}), str)


async def test_the_example_policy_is_built_with_the_directory_and_its_secrets(
    db, http: httpx.AsyncClient, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["enricher_options"]["asset_inventory"]["path"] = str(ROOT / "bot/samples/assets.csv")
    policy = Policy.model_validate(data)
    environ = {
        **AD_ENVIRON,
        "VT_API_KEY": "vt",
        "ABUSEIPDB_API_KEY": "abuse",
        "OKTA_HOOK_TOKEN": "okta",
        "CROWDSTRIKE_HOOK_TOKEN": "cs",
        "SCANNER_HMAC_SECRET": "hmac",
    }
    built = Wiring(Settings(_env_file=None), policy, environ=environ, http=http)  # type: ignore[call-arg]
    assert set(built.detectors()) == {"generic", "okta", "crowdstrike", "panos"}
    assert set(built.webhook_auth()) == {"generic", "okta", "crowdstrike"}
    assert built.sources() == []  # the example's tail is disabled until its file exists
    names = [e.name for e in built.enrichers(db)]
    assert names == ["active_directory", "asset_inventory", "virustotal", "abuseipdb"]
    responders = built.responders()
    assert set(responders) == {"ad_disable_account"}
    assert responders["ad_disable_account"].plan(
        "CORP\\jdoe", {"display_name": "John Doe", "department": "Engineering"}
    ) == ("Disable CORP\\jdoe (John Doe, Engineering) in Active Directory")
