"""SIGHUP re-reads the policy; an invalid one is refused and the old one kept."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.reload import install_policy_reload
from pipeline.errors import ConfigError
from pipeline.policy import Policy


@pytest.fixture
async def loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    running = asyncio.get_running_loop()
    yield running
    running.remove_signal_handler(signal.SIGHUP)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the SIGHUP handler did not run")


def hup() -> None:
    os.kill(os.getpid(), signal.SIGHUP)


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.reload" and r.levelno == level]


async def test_a_valid_policy_is_applied(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.reload")
    path = tmp_path / "fido.yml"
    path.write_text("thresholds: {ask_approval: 80}\n")
    applied: list[Policy] = []
    install_policy_reload(loop, path, applied.append)
    hup()
    await until(lambda: bool(applied))
    assert [p.thresholds.ask_approval for p in applied] == [80]
    assert logged(caplog, logging.INFO) == [f"policy reloaded from {path}"]


async def test_an_invalid_policy_is_refused_then_a_fixed_one_applied(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.reload")
    path = tmp_path / "fido.yml"
    path.write_text("thresholds:\n  ask_approval: lots\ndry_run: maybe\n")
    applied: list[Policy] = []
    install_policy_reload(loop, str(path), applied.append)
    hup()
    await until(lambda: bool(logged(caplog, logging.ERROR)))
    assert applied == []
    assert logged(caplog, logging.ERROR) == [
        "policy not reloaded, keeping the previous one:\n"
        f"{path}:2:17: thresholds.ask_approval: Input should be a valid integer, unable to"
        " parse string as an integer\n"
        f"{path}:3:10: dry_run: Input should be a valid boolean, unable to interpret input"
    ]
    assert logged(caplog, logging.INFO) == []

    path.write_text("thresholds:\n  ask_approval: 90\ndry_run: true\n")
    hup()
    await until(lambda: bool(applied))
    assert [(p.thresholds.ask_approval, p.dry_run) for p in applied] == [(90, True)]
    assert logged(caplog, logging.INFO) == [f"policy reloaded from {path}"]


async def test_without_a_policy_file_it_only_warns(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.reload")
    applied: list[Policy] = []
    install_policy_reload(loop, None, applied.append)
    hup()
    await until(lambda: bool(logged(caplog, logging.WARNING)))
    assert applied == []
    assert logged(caplog, logging.WARNING) == [
        "SIGHUP: no policy file configured (FIDO_CONFIG), nothing to reload"
    ]


async def test_a_policy_that_cannot_be_applied_is_logged(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.reload")
    path = tmp_path / "fido.yml"
    path.write_text("enrichers: [nosuch]\n")

    def apply(policy: Policy) -> None:
        raise ConfigError(f"unknown enricher {policy.enrichers[0]!r}")

    install_policy_reload(loop, path, apply)
    hup()
    await until(lambda: bool(logged(caplog, logging.ERROR)))
    assert logged(caplog, logging.ERROR) == [
        f"policy from {path} is valid but could not be applied: unknown enricher 'nosuch'"
    ]
    assert logged(caplog, logging.INFO) == []
