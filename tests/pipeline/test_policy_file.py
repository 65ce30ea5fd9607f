"""The policy file: every problem at its line and column, in one pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.policy import ActionPolicy, Policy, Scoring
from pipeline.policy import load_policy as load_from_settings
from pipeline.policy_file import PolicyFileError, PolicyProblem, check_policy, load_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "fido.example.yml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fido.yml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    return [str(p).removeprefix(f"{path}:") for p in check_policy(path)]


def test_every_error_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    text = (
        "detectors:\n"  # 1
        "  okta:\n"  # 2
        "    token_env: OKTA_TOKEN\n"  # 3
        "    tokenheader: Authorization\n"  # 4
        "thresholds:\n"  # 5
        "  notify: high\n"  # 6
        "  ask_approval: 70\n"  # 7
        "scoring:\n"  # 8
        "  threat:\n"  # 9
        "    cap: 170\n"  # 10
        "suppressions:\n"  # 11
        "  - match: {usr: alice}\n"  # 12
        "    owner: secops\n"  # 13
        "    expires: 2027-01-01\n"  # 14
        "enrichers: active_directory\n"  # 15
    )
    assert problems(tmp_path, text) == [
        "4:5: detectors.okta.tokenheader: unknown key, did you mean 'token_header'? (expected"
        " one of: enabled, field_map, token_env, token_header, signature, options, auto_act)",
        "6:11: thresholds.notify: Input should be a valid integer, unable to parse string as"
        " an integer",
        "10:10: scoring.threat.cap: Input should be less than or equal to 100",
        "12:5: suppressions.0.reason: required key is missing",
        "12:13: suppressions.0.match.usr: unknown key, did you mean 'user'? (expected one of:"
        " user, host, ip, hash, domain, detector, title)",
        "15:12: enrichers: Input should be a valid list",
    ]


def test_load_policy_raises_one_config_error_listing_them_all(tmp_path: Path) -> None:
    path = write(tmp_path, "dry_run: maybe\nsuppression_days: 0\n")
    with pytest.raises(PolicyFileError) as raised:
        load_policy(path)
    assert isinstance(raised.value, ConfigError)
    assert str(raised.value).splitlines() == [
        f"FIDO_CONFIG: 2 problems in the policy {path}:",
        f"{path}:1:10: dry_run: Input should be a valid boolean, unable to interpret input",
        f"{path}:2:19: suppression_days: Input should be greater than or equal to 1",
    ]
    assert [(p.line, p.column, p.where) for p in raised.value.problems] == [
        (1, 10, "dry_run"),
        (2, 19, "suppression_days"),
    ]
    with pytest.raises(ConfigError, match=r"(?m)^.*:1:10: dry_run: "):
        load_from_settings(path)  # pipeline.policy.load_policy delegates


def test_unknown_keys_list_what_each_model_accepts(tmp_path: Path) -> None:
    text = (
        "detectrs: {}\n"  # 1: top level
        "sources:\n"  # 2
        "  eve:\n"  # 3
        "    type: logfile\n"  # 4
        "    detector: suricata\n"  # 5
        "    interval: 5\n"  # 6: in a dict[str, SourcePolicy]
        "actions:\n"  # 7
        "  - responder: log_only\n"  # 8
        "    colour: red\n"  # 9: in a list[ActionPolicy]
        "lookups:\n"  # 10
        "  providers:\n"  # 11
        "    virustotal: {per_hour: 3}\n"  # 12: in a dict inside a model
    )
    found = problems(tmp_path, text)
    assert found[0].startswith("1:1: detectrs: unknown key, did you mean 'detectors'? (expected")
    assert found[0].endswith(", ".join(Policy.model_fields) + ")")
    assert found[1:] == [
        "6:5: sources.eve.interval: unknown key, did you mean 'interval_seconds'? (expected"
        " one of: type, detector, interval_seconds, enabled, options)",
        "9:5: actions.0.colour: unknown key (expected one of: "
        + ", ".join(ActionPolicy.model_fields)
        + ")",
        "12:18: lookups.providers.virustotal.per_hour: unknown key (expected one of:"
        " per_minute, per_day, breaker_failures, breaker_cooldown_seconds, concurrency)",
    ]


def test_missing_keys_and_whole_section_errors_point_at_the_key(tmp_path: Path) -> None:
    text = (
        "sources:\n"  # 1
        "  eve:\n"  # 2
        "    detector: suricata\n"  # 3
        "detectors:\n"  # 4
        "  okta:\n"  # 5: empty value
        "thresholds:\n"  # 6
        "  ask_approval: 80\n"  # 7
        "  auto_act: 50\n"  # 8
        "scoring:\n"  # 9
        "  correlation:\n"  # 10
        "    repeat_after_hours: {soon: 5}\n"  # 11
    )
    assert problems(tmp_path, text) == [
        "2:3: sources.eve.type: required key is missing",
        "5:3: detectors.okta: Input should be a valid dictionary or instance of DetectorPolicy",
        "6:1: thresholds: thresholds.auto_act must be at least thresholds.ask_approval",
        "11:26: scoring.correlation.repeat_after_hours.soon: Input should be a valid number,"
        " unable to parse string as a number",
    ]


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    text = (
        "thresholds:\n"  # 1
        "  ask_approval: 60\n"  # 2
        "  notify: 10\n"  # 3
        "  ask_approval: 90\n"  # 4
        "dry_run: true\n"  # 5
        "dry_run: false\n"  # 6
    )
    assert problems(tmp_path, text) == [
        "4:3: thresholds.ask_approval: duplicate key (first given at line 2, column 3;"
        " only the last one would count)",
        "6:1: dry_run: duplicate key (first given at line 5, column 1;"
        " only the last one would count)",
    ]


def test_merge_keys_and_aliases_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        "lookups:\n"
        "  providers:\n"
        "    virustotal: &limits {per_minute: 4, per_day: 500}\n"
        "    abuseipdb:\n"
        "      <<: *limits\n"
        "      per_minute: 10\n"
        "    greynoise: *limits\n"
    )
    policy = load_policy(write(tmp_path, text))
    assert policy.lookups.providers["abuseipdb"].per_minute == 10
    assert policy.lookups.providers["greynoise"].per_day == 500


def test_yaml_syntax_errors_give_their_position(tmp_path: Path) -> None:
    assert problems(tmp_path, "thresholds:\n  notify: 0\n ask_approval: 70\n") == [
        "3:2: invalid YAML: expected <block end>, but found '<block mapping start>'"
        " (while parsing a block mapping at 1:1)"
    ]
    assert problems(tmp_path, "approvers: [U1, U2\nenrichers: []\n") == [
        "2:10: invalid YAML: expected ',' or ']', but got ':'"
        " (while parsing a flow sequence at 1:12)"
    ]
    assert problems(tmp_path, "dry_run: true\n\tmax_auto_actions_per_hour: 3\n") == [
        "2:1: invalid YAML: found character '\\t' that cannot start any token"
        " (while scanning for the next token)"
    ]
    assert problems(tmp_path, "suppression_days: !!int thirty\n") == [
        "1:19: invalid YAML value: invalid literal for int() with base 10: 'thirty'"
    ]


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "\n- detectors\n- enrichers\n") == [
        "2:1: the policy must be a mapping of keys to values, not a list"
    ]
    assert problems(tmp_path, "dry_run\n") == [
        "1:1: the policy must be a mapping of keys to values, not a single value ('dry_run')"
    ]


def test_missing_and_unreadable_files_are_one_error_each(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    assert check_policy(missing) == [
        PolicyProblem(str(missing), None, None, "", "policy file does not exist")
    ]
    assert [str(p) for p in check_policy(tmp_path)] == [
        f"{tmp_path}: is a directory, not a policy file"
    ]
    (tmp_path / "latin1.yml").write_bytes(b"approvers: [U1]\nowner: Ren\xe9\n")
    assert [str(p) for p in check_policy(tmp_path / "latin1.yml")] == [
        f"{tmp_path / 'latin1.yml'}:2:11: not UTF-8 text"
    ]
    with pytest.raises(ConfigError, match="policy file does not exist"):
        load_policy(missing)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = Path(write(tmp_path, "dry_run: true\n"))
    path.chmod(0)
    assert [str(p) for p in check_policy(path)] == [
        f"{path}: cannot read the policy file: Permission denied"
    ]


def test_empty_files_and_no_file_give_the_defaults(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "# nothing yet\n")) == Policy()
    assert load_from_settings(None) == Policy()
    assert load_from_settings("") == Policy()


def test_the_example_policy_is_valid_and_complete() -> None:
    assert check_policy(EXAMPLE) == []
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert list(data) and set(data) == set(Policy.model_fields)
    assert set(data["scoring"]) == set(Scoring.model_fields)
    rule = data["suppressions"][0]
    assert set(rule) == {"name", "match", "owner", "reason", "expires"}
