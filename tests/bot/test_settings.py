from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from bot.settings import ENV_NAMES, Settings
from integrations.directory import config as directory
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting_with_a_comment() -> None:
    """Fido's own settings and those beside the integrations (the directory's FIDO_AD_*)."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = [m.group(1) for line in lines if (m := re.match(r"^([A-Z_]+)=", line))]
    assert sorted(names) == sorted(ENV_NAMES + directory.ENV_NAMES)
    assert "FIDO_AD_URL" in directory.ENV_NAMES and "FIDO_AD_URL" not in ENV_NAMES
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z_]+=", line):
            above = lines[index - 1]
            assert above.startswith("#") or re.match(r"^[A-Z_]+=", above), line


def test_secrets_never_appear_in_repr_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("FIDO_AD_PASSWORD", "hunter2-secret")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    ad = directory.ADConfig(  # type: ignore[call-arg]
        _env_file=None, url="ldaps://dc", bind_dn="CN=fido", base_dn="DC=corp"
    )
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s %r %s %r", settings, settings, ad, ad)
    assert "very-secret" not in caplog.text + repr(settings) + str(settings)
    assert "hunter2" not in caplog.text + repr(settings) + repr(ad) + str(ad)
    assert ad.password.get_secret_value() == "hunter2-secret"  # read from FIDO_AD_PASSWORD
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-very-secret"


def test_missing_required_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIDO_SLACK_CHANNEL", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="^FIDO_SLACK_CHANNEL is not set"):
        settings.require("FIDO_SLACK_CHANNEL")


def test_approvers_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIDO_APPROVERS", "U1, U2,,U3")
    assert Settings(_env_file=None).approvers == ["U1", "U2", "U3"]  # type: ignore[call-arg]


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == f"sqlite:///{tmp_path / 'fido.db'}"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.config is None


def test_bolt_does_not_warn_that_the_token_in_its_client_is_unused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from slack_bolt.async_app import AsyncApp

    from bot.slack.app import web_client

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-the-environment")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with caplog.at_level(logging.INFO):
        AsyncApp(client=web_client(settings), signing_secret="s")
        logging.getLogger("slack_bolt.AsyncApp").warning("another warning")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("slack_bolt")]
    assert messages == ["another warning"]  # only that one message is dropped


def test_the_scheduler_is_quiet_at_info_and_talks_at_debug() -> None:
    from bot.service import quiet_scheduler

    root = logging.getLogger()
    quieted = [logging.getLogger("apscheduler"), logging.getLogger("uvicorn.error")]
    before = root.level, [logger.level for logger in quieted]
    try:
        root.setLevel(logging.DEBUG)
        for logger in quieted:
            logger.setLevel(logging.NOTSET)
        quiet_scheduler()
        assert all(logger.getEffectiveLevel() == logging.DEBUG for logger in quieted)
        root.setLevel(logging.INFO)
        quiet_scheduler()
        for logger in quieted:
            assert not logger.isEnabledFor(logging.INFO)
            assert logger.isEnabledFor(logging.WARNING)  # missed runs, a port in use
    finally:
        root.setLevel(before[0])
        for logger, level in zip(quieted, before[1], strict=True):
            logger.setLevel(level)
