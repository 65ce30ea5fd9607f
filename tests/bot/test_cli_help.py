"""Every ``fido … --help`` screen: no Python type placeholders, usage names matching the
text, and ``serve`` naming the settings it needs and where they come from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from bot.cli import command
from bot.settings import AD_REQUIRED, SERVE_REQUIRED


def every_command(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(node, "commands", {}).items()):
        yield from every_command(sub, (*path, name))


def help_of(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    code = command().main(args=[*path, "--help"], prog_name="fido", standalone_mode=False)
    assert code in (0, None)
    return capsys.readouterr().out


PATHS = list(every_command(command()))


def test_the_walk_finds_the_commands() -> None:
    assert {("serve",), ("doctor",), ("init",), ("parse",), ("dead-letters", "retry")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "fido")
def test_help_screen_reads_well(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    text = help_of(path, capsys)
    assert "Usage: fido" in text
    assert not re.search(r"<(bool|str|int|float|path|list\[[^>]*\]|text|integer)>", text), text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage
    node = command()
    for name in path:
        node = node.commands[name]
    for param in node.params:
        if param.param_type_name == "argument":  # named alike in the usage and the text
            assert param.metavar and param.metavar.isupper(), param.name
            assert param.metavar in usage, (param.metavar, usage)
            assert param.metavar in text.split(usage, 1)[1]


def test_serve_help_names_the_settings_and_where_they_come_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    text = " ".join(help_of(("serve",), capsys).split())
    for name in (*SERVE_REQUIRED, *AD_REQUIRED, "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        assert name in text
    assert "from the environment, or from a .env file" in text
    assert "fido doctor" in text and "fido init" in text


def test_parse_usage_reads_detector_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    text = help_of(("parse",), capsys)
    assert "Usage: fido parse [OPTIONS] DETECTOR FILE" in text
    assert "Print the events DETECTOR makes of FILE" in text


def test_settings_for_help_match_the_directory_model() -> None:
    from integrations.directory.config import ADConfig, env_name

    required = [env_name(f) for f, info in ADConfig.model_fields.items() if info.is_required()]
    assert list(AD_REQUIRED) == required
