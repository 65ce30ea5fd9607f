"""``fido init`` without a terminal: every answer from flags, files written safely, then
``fido doctor`` against the real directory and the fake Slack."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

from bot import doctor_slack
from bot.settings import ENV_NAMES
from pipeline.policy import load_policy
from tests.fixtures.samba import SambaAD
from tests.fixtures.slack_socket import SocketModeSlack


def fido(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_NAMES and "FIDO_AD" not in k}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "init", "--no-input", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environ | env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


SLACK_FLAGS = ("--slack-mode", "socket", "--bot-token", "xoxb-test", "--app-token", "xapp-1")


def test_init_from_flags_then_doctor_passes(
    tmp_path: Path, socket_slack: SocketModeSlack, samba_ad: SambaAD
) -> None:
    fake_slack = socket_slack
    fake_slack.scopes = ",".join(doctor_slack.manifest_scopes() or [])
    fake_slack.channels["C0SOC"] = {"name": "soc", "is_member": True}
    done = fido(
        *SLACK_FLAGS[:4],
        "--app-token",
        fake_slack.app_token,
        "--channel",
        "C0SOC",
        "--ad-url",
        samba_ad.ldaps_url,
        "--ad-bind-dn",
        samba_ad.admin_dn,
        "--ad-password",
        samba_ad.admin_password,
        "--ad-base-dn",
        samba_ad.base_dn,
        "--ad-ca-file",
        str(samba_ad.ca_file),
        "--detectors",
        "generic,crowdstrike",
        cwd=tmp_path,
        SLACK_API_URL=fake_slack.base_url,  # the environment wins over .env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    env_file, policy_file = tmp_path / ".env", tmp_path / "fido.yml"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dotenv_values(env_file)
    assert values["SLACK_APP_TOKEN"] == fake_slack.app_token
    assert "SLACK_SIGNING_SECRET" not in values
    assert len(values["FIDO_WEBHOOK_TOKEN"] or "") >= 32  # a random one
    assert values["FIDO_AD_PASSWORD"] == samba_ad.admin_password
    assert values["FIDO_CONFIG"] == str(policy_file)
    policy = load_policy(policy_file)
    assert list(policy.detectors) == ["generic", "crowdstrike"]
    assert policy.enrichers == ["active_directory"]
    assert [a.responder for a in policy.actions] == ["ad_disable_account"]
    assert policy_file.read_text().startswith("# Fido's policy")
    out = done.stdout
    assert "ok       directory bind" in out and "ok       slack channel C0SOC" in out
    assert "ok       slack socket mode" in out
    assert out.splitlines()[-1].endswith("Fido is ready (fido serve)")
    assert samba_ad.admin_password not in out  # secrets never printed


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KEEP=1\n")
    flags = (*SLACK_FLAGS, "--channel", "C1", "--no-directory", "--no-doctor")
    done = fido(*flags, cwd=tmp_path)
    assert done.returncode == 1 and "--force" in done.stderr
    assert (tmp_path / ".env").read_text() == "KEEP=1\n"
    assert not (tmp_path / "fido.yml").exists()
    done = fido(*flags, "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert dotenv_values(tmp_path / ".env")["FIDO_SLACK_CHANNEL"] == "C1"


def test_init_names_every_missing_answer_and_writes_nothing(tmp_path: Path) -> None:
    done = fido("--slack-mode", "http", cwd=tmp_path)
    assert done.returncode == 2
    for flag in ("--bot-token", "--signing-secret", "--channel", "--ad-url", "--ad-password"):
        assert flag in done.stderr
    assert "--app-token" not in done.stderr
    assert list(tmp_path.iterdir()) == []
    done = fido(
        *SLACK_FLAGS, "--channel", "C1", "--no-directory", "--detectors", "nope", cwd=tmp_path
    )
    assert done.returncode == 2 and "unknown detector nope" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_http_mode_enrichers_and_awkward_values(tmp_path: Path) -> None:
    awkward = 'pa ss"wo\\rd#1'
    done = fido(
        "--slack-mode",
        "http",
        "--bot-token",
        "xoxb-1",
        "--signing-secret",
        awkward,
        "--channel",
        "C1",
        "--no-directory",
        "--enrichers",
        "virustotal,misp",
        "--secret",
        "VIRUSTOTAL_API_KEY=vt",
        "--secret",
        "MISP_API_KEY=mk",
        "--option",
        "misp.base_url=https://misp.corp.test",
        "--dir",
        str(tmp_path / "conf"),
        "--no-doctor",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    values = dotenv_values(tmp_path / "conf" / ".env")
    assert values["SLACK_SIGNING_SECRET"] == awkward
    assert (values["VIRUSTOTAL_API_KEY"], values["MISP_API_KEY"]) == ("vt", "mk")
    policy = load_policy(tmp_path / "conf" / "fido.yml")
    assert policy.enrichers == ["virustotal", "misp"]
    assert policy.enricher_options["misp"] == {
        "base_url": "https://misp.corp.test",
        "api_key_env": "MISP_API_KEY",
    }
    assert [a.responder for a in policy.actions] == ["log_only"]
