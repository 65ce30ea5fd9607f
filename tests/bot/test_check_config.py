"""``fido check-config``: every problem with its position, or a one-line summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from pipeline.plugins import detectors

EXAMPLE = Path(__file__).resolve().parents[2] / "fido.example.yml"


@pytest.fixture(autouse=True)
def no_fido_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIDO_CONFIG", raising=False)


def check(*args: str, **env: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["check-config", *args], env=env or None)


def test_every_problem_is_printed_with_its_position_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "fido.yml"
    path.write_text(
        "thresholds:\n"  # 1
        "  notify: loud\n"  # 2
        "  ask: 70\n"  # 3
        "dry_run: yes please\n"  # 4
        "dry_run: false\n"  # 5
    )
    done = check(str(path))
    assert done.exit_code == 1
    assert done.stdout.splitlines() == [
        f"{path}:2:11: thresholds.notify: Input should be a valid integer, unable to parse"
        " string as an integer",
        f"{path}:3:3: thresholds.ask: unknown key (expected one of: notify, ask_approval,"
        " auto_act)",
        f"{path}:5:1: dry_run: duplicate key (first given at line 4, column 1; only the last"
        " one would count)",
    ]


def test_a_valid_policy_prints_a_summary_and_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "fido.yml"
    path.write_text(
        "detectors: {generic: {}, okta: {token_env: OKTA_TOKEN}, suricata: {}}\n"
        "enrichers: [active_directory, virustotal]\n"
        "enricher_options: {virustotal: {api_key_env: VT_API_KEY}}\n"
        "thresholds: {ask_approval: 80, auto_act: 95}\n"
        "suppressions:\n"
        "  - match: {host: scanner01}\n"
        "    owner: secops\n"
        "    reason: weekly scan\n"
        "    expires: 2027-01-01\n"
    )
    done = check(str(path))
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        f"{path}: valid — 3 detectors, 0 sources, 2 enrichers, 1 suppression,"
        " thresholds notify 0 / ask 80 / auto 95\n"
    )


def test_the_path_defaults_to_fido_config(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text("dry_run: true\n")
    done = check(FIDO_CONFIG=str(path))
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        f"{path}: valid — 1 detector, 0 sources, 1 enricher, 0 suppressions,"
        " thresholds notify 0 / ask 70 / auto off, dry run\n"
    )


def test_without_a_path_it_says_so_and_exits_2() -> None:
    done = check()
    assert done.exit_code == 2
    assert done.stderr == "fido: no policy file: give PATH or set FIDO_CONFIG\n"


def test_syntax_errors_and_missing_files_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "fido.yml"
    path.write_text("approvers: [U1\n")
    done = check(str(path))
    assert done.exit_code == 1
    assert done.stdout == (
        f"{path}:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"
        " (while parsing a flow sequence at 1:12)\n"
    )
    done = check(str(tmp_path / "nope.yml"))
    assert (done.exit_code, done.stdout) == (
        1,
        f"{tmp_path / 'nope.yml'}: policy file does not exist\n",
    )


def test_the_example_policy_checks_clean() -> None:
    done = check(str(EXAMPLE))
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"{EXAMPLE}: valid — ")


def test_plugin_options_are_checked_at_their_place(tmp_path: Path) -> None:
    path = tmp_path / "fido.yml"
    path.write_text(
        "detectors:\n"  # 1
        "  panos: {options: {timezone: Mars/Olympus}}\n"  # 2
        "  nosuch: {}\n"  # 3
        "sources:\n"  # 4
        "  tail: {type: logfile, detector: clamav, options: {path: /x, colour: red}}\n"  # 5
        "enrichers: [active_directory, virustotal]\n"  # 6
        "actions:\n"  # 7
        "  - responder: openvpn_kill_session\n"  # 8
        "    options:\n"  # 9
        "      managment_port: 7505\n"  # 10
        "      password_env: not a name\n"  # 11
    )
    done = check(str(path))
    assert done.exit_code == 1
    assert done.stdout.splitlines() == [
        f"{path}:2:31: detectors.panos.options.timezone: detector panos: option 'timezone':"
        " unknown time zone 'Mars/Olympus'",
        f"{path}:3:3: detectors.nosuch: unknown detector 'nosuch' (known:"
        f" {', '.join(detectors.names())})",  # the built-in ones, and any a test registered
        f"{path}:5:63: sources.tail.options.colour: source tail (logfile): unknown option 'colour'",
        f"{path}:6:31: enrichers.1: enricher virustotal: option 'api_key_env' is required",
        f"{path}:9:5: actions.0.options.management_port: responder openvpn_kill_session: option"
        " 'management_port' is required",
        f"{path}:10:7: actions.0.options.managment_port: responder openvpn_kill_session: unknown"
        " option 'managment_port', did you mean 'management_port'?",
        f"{path}:11:21: actions.0.options.password_env: responder openvpn_kill_session: option"
        " 'password_env': String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'",
    ]


def test_the_same_responder_with_other_options_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fido.yml"
    path.write_text(
        "actions:\n"
        "  - {responder: log_only, options: {target_kind: user}}\n"
        "  - {responder: log_only, options: {target_kind: host}}\n"
    )
    done = check(str(path))
    assert done.exit_code == 1
    assert done.stdout == (
        f"{path}:1:1: actions: actions 0 and 1 both name log_only with different options;"
        " give the same options (one responder is built per name)\n"
    )
