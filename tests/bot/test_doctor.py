"""``fido doctor``: every check against the real thing where it runs here (Samba AD,
SQLite and PostgreSQL, an OpenVPN management interface), the fake Slack, and vendor-shaped
answers for the enrichers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import doctor, doctor_remote, doctor_slack
from bot.doctor import Status
from bot.doctor_settings import SettingsReport, check_settings
from bot.settings import ENV_NAMES, Settings
from integrations import load_all
from pipeline import db as database
from pipeline.policy import ActionPolicy, Policy
from tests.fixtures import openvpn as openvpn_fixtures
from tests.fixtures.openvpn import OpenVPNServer
from tests.fixtures.samba import SambaAD
from tests.fixtures.slack import FakeSlack
from tests.fixtures.slack_socket import SocketModeSlack

ROOT = Path(__file__).resolve().parents[2]
# the fixtures, found by pytest under these names
openvpn_server = openvpn_fixtures.openvpn_server
openvpn = openvpn_fixtures.openvpn
CHANNEL = "C0FIDO"


def settings_for(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def statuses(checks: list[doctor.Check]) -> dict[str, Status]:
    return {c.name: c.status for c in checks}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    for name in [*ENV_NAMES, "FIDO_AD_URL", "FIDO_AD_BIND_DN", "FIDO_AD_PASSWORD"]:
        monkeypatch.delenv(name, raising=False)
    load_all()


# -- settings ------------------------------------------------------------------------


def test_every_missing_setting_is_listed_at_once() -> None:
    report = check_settings(
        settings_for(), Policy(), serve=True, sections=("enrichers", "responders"), environ={}
    )
    assert report.missing == [
        "FIDO_WEBHOOK_TOKEN",
        "SLACK_BOT_TOKEN",
        "FIDO_SLACK_CHANNEL",
        "SLACK_SIGNING_SECRET",
        "FIDO_AD_URL",
        "FIDO_AD_BIND_DN",
        "FIDO_AD_PASSWORD",
        "FIDO_AD_BASE_DN",
    ]
    message = report.message("fido serve")
    assert message.startswith("8 settings are missing for fido serve;")
    assert "environment or in .env" in message
    ad = next(p for p in report.problems if p.name == "FIDO_AD_URL")
    assert ad.needed_by == ["enricher active_directory", "responder ad_disable_account"]


def test_socket_mode_needs_no_signing_secret_and_policy_secrets_are_named() -> None:
    policy = Policy(
        enrichers=["virustotal", "greynoise"],
        enricher_options={
            "virustotal": {"api_key_env": "VT_KEY"},
            "greynoise": {"api_key_env": "GN_KEY"},
        },
        actions=[ActionPolicy(responder="log_only")],
    )
    settings = settings_for(
        FIDO_WEBHOOK_TOKEN="t", SLACK_BOT_TOKEN="xoxb-1", FIDO_SLACK_CHANNEL="C1"
    )
    settings.slack_app_token = settings.webhook_token  # Socket Mode
    report = check_settings(
        settings, policy, serve=True, sections=("enrichers",), environ={"GN_KEY": "k"}
    )
    assert report.missing == ["VT_KEY"]
    assert report.problems[0].needed_by == ["enricher virustotal"]
    assert check_settings(
        settings,
        policy,
        serve=True,
        sections=("enrichers",),
        environ={"VT_KEY": "1", "GN_KEY": "2"},
    ).ok


def test_a_wrong_option_is_reported_beside_the_missing_ones() -> None:
    policy = Policy(enrichers=["nosuch"], actions=[])
    report = check_settings(settings_for(), policy, serve=True, sections=("enrichers",))
    assert "FIDO_WEBHOOK_TOKEN" in report.missing
    wrong = [p for p in report.problems if not p.missing]
    assert [p.name for p in wrong] == ["enricher nosuch"]
    assert "unknown enricher 'nosuch'" in wrong[0].reason
    assert "and these are wrong:" in report.message("fido serve")


def fido(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_NAMES and "FIDO_AD" not in k}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environ | env,
        timeout=120,
    )


def test_serve_lists_every_missing_setting_before_creating_anything(tmp_path: Path) -> None:
    done = fido("serve", cwd=tmp_path)
    assert done.returncode == 2
    for name in ("FIDO_WEBHOOK_TOKEN", "SLACK_BOT_TOKEN", "FIDO_SLACK_CHANNEL"):
        assert name in done.stderr
    assert "SLACK_SIGNING_SECRET" in done.stderr and "FIDO_AD_BASE_DN" in done.stderr
    assert done.stderr.count("fido:") == 1  # one message
    assert list(tmp_path.iterdir()) == []  # no fido.db


def test_lookup_with_nothing_configured_creates_no_database(tmp_path: Path) -> None:
    done = fido("lookup", "ip", "10.1.2.3", cwd=tmp_path)
    assert done.returncode == 2
    assert "FIDO_AD_URL" in done.stderr and "fido lookup" in done.stderr
    assert list(tmp_path.iterdir()) == []
    done = fido("respond", "ad_disable_account", "alice", cwd=tmp_path)
    assert done.returncode != 0 and "FIDO_AD_BASE_DN" in done.stderr
    assert list(tmp_path.iterdir()) == []


# -- the database ---------------------------------------------------------------------


def test_database_missing_outdated_migrated(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        fresh = f"sqlite:///{tmp_path / 'new.db'}"
        check = doctor.database_check(fresh)
        assert check.status is Status.skipped and "fido serve creates it" in check.detail
        assert not (tmp_path / "new.db").exists()
    database.upgrade(database_url, "0001")
    outdated = doctor.database_check(database_url)
    assert outdated.status is Status.failed
    assert "at migration 0001" in outdated.detail and "fido db upgrade" in outdated.fix
    database.upgrade(database_url)
    assert doctor.database_check(database_url).status is Status.ok


def test_unreachable_postgresql_is_a_failure() -> None:
    check = doctor.database_check(f"postgresql://fido@127.0.0.1:{closed_port()}/fido")
    assert check.status is Status.failed
    assert check.detail.startswith("cannot connect")
    assert "FIDO_DATABASE_URL" in check.fix


# -- Slack ----------------------------------------------------------------------------


def slack_settings(fake: FakeSlack, channel: str = CHANNEL) -> Settings:
    return settings_for(
        SLACK_BOT_TOKEN=fake.token, FIDO_SLACK_CHANNEL=channel, SLACK_API_URL=fake.base_url
    )


def granted_everything(fake: FakeSlack) -> None:
    scopes = doctor_slack.manifest_scopes()
    assert scopes and "chat:write" in scopes  # read from manifest.yml
    fake.scopes = ",".join(scopes)


async def test_slack_all_good(fake_slack: FakeSlack) -> None:
    granted_everything(fake_slack)
    fake_slack.channels[CHANNEL] = {"name": "security-incidents", "is_member": True}
    checks = await doctor_slack.checks(slack_settings(fake_slack), Policy(), timeout=5)
    assert statuses(checks) == {
        "slack token": Status.ok,
        "slack scopes": Status.ok,
        f"slack channel {CHANNEL}": Status.ok,
    }
    assert "#security-incidents" in checks[2].detail
    assert [p["channel"] for p in fake_slack.calls("conversations.info")] == [CHANNEL]


async def test_slack_missing_scope_and_not_a_member(fake_slack: FakeSlack) -> None:
    fake_slack.scopes = "chat:write,commands,users:read"
    fake_slack.channels[CHANNEL] = {"name": "security-incidents", "is_member": False}
    policy = Policy.model_validate({"routing": {"rules": [{"channel": "C0OTHER"}]}})
    checks = await doctor_slack.checks(slack_settings(fake_slack), policy, timeout=5)
    by_name = {c.name: c for c in checks}
    scopes = by_name["slack scopes"]
    assert scopes.status is Status.failed
    assert "users:read.email" in scopes.detail and "chat:write," not in scopes.detail
    assert "reinstall" in scopes.fix
    member = by_name[f"slack channel {CHANNEL}"]
    assert member.status is Status.failed and "/invite @fido" in member.fix
    other = by_name["slack channel C0OTHER"]  # the policy's routing names it
    assert other.status is Status.failed and "cannot see" in other.detail


async def test_slack_wrong_token_and_outages(fake_slack: FakeSlack) -> None:
    wrong = settings_for(
        SLACK_BOT_TOKEN="xoxb-wrong", FIDO_SLACK_CHANNEL=CHANNEL, SLACK_API_URL=fake_slack.base_url
    )
    [check] = await doctor_slack.checks(wrong, Policy(), timeout=5)
    assert (check.status, check.detail) == (Status.failed, "auth.test failed: invalid_auth")
    assert "Bot User OAuth Token" in check.fix
    fake_slack.down("internal_error", status=500)
    [check] = await doctor_slack.checks(slack_settings(fake_slack), Policy(), timeout=5)
    assert check.status is Status.failed and "internal_error" in check.detail
    fake_slack.up()
    fake_slack.fail_next("auth.test", "ratelimited", status=429, headers={"Retry-After": "0"})
    fake_slack.fail_next("auth.test", "ratelimited", status=429, headers={"Retry-After": "0"})
    [check] = await doctor_slack.checks(slack_settings(fake_slack), Policy(), timeout=5)
    assert check.status is Status.failed and "again in a minute" in check.fix


async def test_slack_that_does_not_answer_is_a_failure(fake_slack: FakeSlack) -> None:
    fake_slack.delay = 3
    [check] = await doctor_slack.checks(slack_settings(fake_slack), Policy(), timeout=1)
    assert check.status is Status.failed and check.name == "slack token"


# -- the directory --------------------------------------------------------------------


def ad_environ(samba: SambaAD, **changes: str) -> dict[str, str]:
    return {
        "FIDO_AD_URL": samba.ldaps_url,
        "FIDO_AD_BIND_DN": samba.admin_dn,
        "FIDO_AD_PASSWORD": samba.admin_password,
        "FIDO_AD_BASE_DN": samba.base_dn,
        "FIDO_AD_CA_FILE": str(samba.ca_file),
    } | changes


def directory_report(environ: dict[str, str]) -> SettingsReport:
    return check_settings(settings_for(), Policy(), sections=("enrichers",), environ=environ)


async def test_directory_right_password(samba_ad: SambaAD) -> None:
    environ = ad_environ(samba_ad)
    report = directory_report(environ)
    assert report.ok and report.directory_users == ["enricher active_directory"]
    checks = await doctor_remote.directory_checks(report, environ, timeout=10)
    assert statuses(checks) == {
        "directory bind": Status.ok,
        "directory base DN": Status.ok,
        "directory search": Status.ok,
    }


async def test_directory_wrong_password_and_wrong_base(samba_ad: SambaAD) -> None:
    environ = ad_environ(samba_ad, FIDO_AD_PASSWORD="not-the-password")
    [bind] = await doctor_remote.directory_checks(directory_report(environ), environ, timeout=10)
    assert bind.status is Status.failed and bind.name == "directory bind"
    assert "not-the-password" not in bind.detail
    assert "FIDO_AD_PASSWORD" in bind.fix
    environ = ad_environ(samba_ad, FIDO_AD_BASE_DN="OU=nowhere," + samba_ad.base_dn)
    checks = await doctor_remote.directory_checks(directory_report(environ), environ, timeout=10)
    assert statuses(checks) == {
        "directory bind": Status.ok,
        "directory base DN": Status.failed,
    }


async def test_unreachable_directory() -> None:
    environ = {
        "FIDO_AD_URL": f"ldap://127.0.0.1:{closed_port()}",
        "FIDO_AD_BIND_DN": "CN=fido",
        "FIDO_AD_PASSWORD": "x",
        "FIDO_AD_BASE_DN": "DC=corp",
    }
    [bind] = await doctor_remote.directory_checks(directory_report(environ), environ, timeout=5)
    assert bind.status is Status.failed and "cannot connect" in bind.detail


# -- enrichers ------------------------------------------------------------------------

VT_USER = {  # GET /api/v3/users/{apikey}, as VirusTotal documents the user object
    "data": {
        "type": "user",
        "id": "fido-soc",
        "attributes": {"quotas": {"api_requests_daily": {"allowed": 500, "used": 3}}},
    }
}


def vt_policy() -> Policy:
    return Policy(
        enrichers=["virustotal", "abuseipdb", "asset_inventory"],
        enricher_options={
            "virustotal": {"api_key_env": "VT_KEY", "base_url": "https://vt.test"},
            "abuseipdb": {"api_key_env": "ABUSE_KEY"},
            "asset_inventory": {"path": str(ROOT / "bot" / "samples" / "assets.csv")},
        },
        actions=[],
    )


async def run_enrichers(handler: Any) -> dict[str, doctor.Check]:
    environ = {"VT_KEY": "vt-secret-key", "ABUSE_KEY": "k"}
    policy = vt_policy()
    report = check_settings(settings_for(), policy, sections=("enrichers",), environ=environ)
    assert report.ok, report.message("test")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        checks = await doctor_remote.enricher_checks(policy, report, environ, timeout=5, http=http)
    return {c.name: c for c in checks}


async def test_enricher_key_accepted_with_a_call_that_spends_no_quota() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=VT_USER)

    checks = await run_enrichers(handler)
    assert checks["enricher virustotal"].status is Status.ok
    [request] = seen  # nothing asked of AbuseIPDB, whose every call spends quota
    assert request.url == "https://vt.test/api/v3/users/vt-secret-key"
    assert request.headers["x-apikey"] == "vt-secret-key"
    abuse = checks["enricher abuseipdb"]
    assert abuse.status is Status.skipped and "quota" in abuse.detail
    assert checks["enricher asset_inventory"].status is Status.skipped


@pytest.mark.parametrize(
    ("status", "body", "detail", "fix"),
    [
        (
            401,
            {"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}},
            "credentials refused",
            "VT_KEY",
        ),
        (
            429,
            {"error": {"code": "QuotaExceededError", "message": "Quota exceeded"}},
            "rate limited",
            "try again later",
        ),
        (500, {"error": {"code": "InternalError", "message": "oops"}}, "server error", "base_url"),
    ],
)
async def test_enricher_failures(status: int, body: dict[str, Any], detail: str, fix: str) -> None:
    checks = await run_enrichers(lambda request: httpx.Response(status, json=body))
    check = checks["enricher virustotal"]
    assert check.status is Status.failed
    assert detail in check.detail and fix in check.fix
    assert "vt-secret-key" not in check.detail + check.fix


async def test_enricher_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    check = (await run_enrichers(handler))["enricher virustotal"]
    assert check.status is Status.failed and "timed out" in check.detail


# -- source and responder endpoints --------------------------------------------------


async def test_openvpn_management_reachable_or_not(openvpn: OpenVPNServer) -> None:
    policy = Policy(
        actions=[
            ActionPolicy(
                responder="openvpn_kill_session",
                options={"management_port": openvpn.management_port},
            )
        ],
        enrichers=[],
    )
    [check] = await doctor_remote.endpoint_checks(policy, timeout=5)
    assert check.status is Status.ok, check
    assert f"127.0.0.1:{openvpn.management_port}" in check.detail
    assert openvpn.running
    closed = Policy(
        actions=[
            ActionPolicy(
                responder="openvpn_kill_session", options={"management_port": closed_port()}
            )
        ],
        enrichers=[],
    )
    [check] = await doctor_remote.endpoint_checks(closed, timeout=5)
    assert check.status is Status.failed and "connection refused" in check.detail
    assert check.name == "responder openvpn_kill_session" and "management_port" in check.fix


def test_endpoints_from_options() -> None:
    found = list(
        doctor_remote.endpoints(
            {
                "base_url": "https://api.example.test",
                "management_host": "10.0.0.1",
                "management_port": 7505,
                "path": "/var/log/x",
                "token_env": "X",
            }
        )
    )
    assert found == [
        ("base_url", "api.example.test", 443),
        ("management_host and management_port", "10.0.0.1", 7505),
    ]


# -- the whole report -----------------------------------------------------------------


async def test_doctor_all_green_then_one_failure(
    fake_slack: FakeSlack, samba_ad: SambaAD, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    database.upgrade(url)
    granted_everything(fake_slack)
    fake_slack.channels[CHANNEL] = {"name": "soc", "is_member": True}
    settings = settings_for(
        FIDO_WEBHOOK_TOKEN="w",
        SLACK_BOT_TOKEN=fake_slack.token,
        FIDO_SLACK_CHANNEL=CHANNEL,
        SLACK_SIGNING_SECRET="s",
        SLACK_API_URL=fake_slack.base_url,
        FIDO_DATABASE_URL=url,
    )
    environ = ad_environ(samba_ad)
    checks = await doctor.diagnose(settings, environ=environ)
    assert doctor.exit_code(checks) == 0, doctor.render(checks)
    assert {c.status for c in checks} <= {Status.ok, Status.skipped}
    text = doctor.render(checks)
    assert text.splitlines()[-1].endswith("Fido is ready (fido serve)")
    fake_slack.channels[CHANNEL]["is_member"] = False
    checks = await doctor.diagnose(settings, environ=environ)
    assert doctor.exit_code(checks) == 1
    body = json.loads(doctor.render_json(checks))
    assert body["ok"] is False
    failing = [c for c in body["checks"] if c["status"] == "failed"]
    assert [c["name"] for c in failing] == [f"slack channel {CHANNEL}"]
    assert failing[0]["fix"]


def test_doctor_command_json_and_exit_code(tmp_path: Path) -> None:
    done = fido("doctor", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    body = json.loads(done.stdout)
    names = {c["name"]: c["status"] for c in body["checks"]}
    assert names["settings"] == "failed" and names["database"] == "skipped"
    assert list(tmp_path.iterdir()) == []  # the database is not created
    text = fido("doctor", cwd=tmp_path)
    assert text.returncode == 1
    assert text.stdout.splitlines()[0].startswith("failed   settings")


async def test_socket_mode_app_token(socket_slack: SocketModeSlack) -> None:
    from pydantic import SecretStr

    granted_everything(socket_slack)
    settings = slack_settings(socket_slack)
    settings.slack_app_token = SecretStr(socket_slack.app_token)
    checks = {c.name: c for c in await doctor_slack.checks(settings, Policy(), timeout=5)}
    assert checks["slack socket mode"].status is Status.ok
    settings.slack_app_token = SecretStr("xapp-wrong")
    checks = {c.name: c for c in await doctor_slack.checks(settings, Policy(), timeout=5)}
    mode = checks["slack socket mode"]
    assert mode.status is Status.failed and "invalid_auth" in mode.detail
    assert "connections:write" in mode.fix


VENDORS = {  # name: (options, environ, the call expected, a documented success, a refusal)
    "greynoise": (
        {"api_key_env": "GN_KEY", "base_url": "https://gn.test"},
        {"GN_KEY": "gn-key"},
        ("GET", "https://gn.test/ping", "key", "gn-key"),
        {"expiration": "2027-01-01", "message": "pong", "offering": "community"},
        (401, {"message": "invalid api key"}),
    ),
    "misp": (
        {"api_key_env": "MISP_KEY", "base_url": "https://misp.test"},
        {"MISP_KEY": "misp-key"},
        ("GET", "https://misp.test/servers/getVersion", "authorization", "misp-key"),
        {"version": "2.4.190", "perm_sync": False, "perm_sighting": False},
        (403, {"name": "Authentication failed.", "message": "Authentication failed."}),
    ),
    "jamf": (
        {
            "base_url": "https://jamf.test",
            "client_id_env": "JAMF_ID",
            "client_secret_env": "JAMF_SECRET",
        },
        {"JAMF_ID": "id-1", "JAMF_SECRET": "jamf-secret"},
        ("POST", "https://jamf.test/api/oauth/token", "", ""),
        {"access_token": "t", "scope": "api-role:1", "token_type": "Bearer", "expires_in": 60},
        (401, {"error": "invalid_client"}),
    ),
}


@pytest.mark.parametrize("name", sorted(VENDORS))
async def test_each_vendor_is_asked_its_harmless_call(name: str) -> None:
    options, environ, expected, success, (status, refusal) = VENDORS[name]
    policy = Policy(enrichers=[name], enricher_options={name: options}, actions=[])
    report = check_settings(settings_for(), policy, sections=("enrichers",), environ=environ)
    assert report.ok, report.message("test")
    seen: list[httpx.Request] = []
    answer: list[httpx.Response] = [httpx.Response(200, json=success)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer[0]

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        [check] = await doctor_remote.enricher_checks(policy, report, environ, timeout=5, http=http)
        assert check.status is Status.ok, check
        method, url, header, value = expected
        assert (seen[0].method, str(seen[0].url)) == (method, url)
        if header:
            assert seen[0].headers[header] == value
        else:  # OAuth client credentials in the form body
            assert b"client_secret=jamf-secret" in seen[0].content
        answer[0] = httpx.Response(status, json=refusal)
        [check] = await doctor_remote.enricher_checks(policy, report, environ, timeout=5, http=http)
    assert check.status is Status.failed
    secret_names = [v for k, v in options.items() if k.endswith("_env")]
    assert any(n in check.fix for n in secret_names), check.fix
    assert all(v not in check.detail for v in environ.values())


def test_a_wrong_directory_value_is_reported_once_for_every_plugin_using_it() -> None:
    environ = {
        "FIDO_AD_URL": "http://dc.corp.test",
        "FIDO_AD_BIND_DN": "CN=fido",
        "FIDO_AD_PASSWORD": "x",
        "FIDO_AD_BASE_DN": "DC=corp",
    }
    report = check_settings(
        settings_for(), Policy(), sections=("enrichers", "responders"), environ=environ
    )
    [problem] = report.problems
    assert (problem.name, problem.missing) == ("FIDO_AD_*", False)
    assert "ldap:// or ldaps://" in problem.reason
    assert problem.needed_by == ["enricher active_directory", "responder ad_disable_account"]
