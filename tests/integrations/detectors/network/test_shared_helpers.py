"""The shared helpers these parsers lean on, at the edges vendor payloads reach: EVE's
"+0100" offsets after a fraction, absurd numbers, and JSON nested past Python's limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from integrations.detectors.common import json_documents, timestamp
from integrations.detectors.okta import OktaDetector
from pipeline.errors import ParseError

PLUS_ONE = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-05T14:07:21.448126+0100", datetime(2026, 3, 5, 14, 7, 21, 448126, PLUS_ONE)),
        ("2026-03-05T14:07:21.4481+01:00", datetime(2026, 3, 5, 14, 7, 21, 448100, PLUS_ONE)),
        ("2026-03-05T14:07:21.123456789Z", datetime(2026, 3, 5, 14, 7, 21, 123456, UTC)),
        ("2026-03-05T13:07:21.5-00:00", datetime(2026, 3, 5, 13, 7, 21, 500000, UTC)),
        (1772431201.577311, datetime(2026, 3, 2, 6, 0, 1, 577311, UTC)),
    ],
)
def test_fractions_keep_their_offset(value: object, expected: datetime) -> None:
    parsed = timestamp(value)
    assert parsed == expected and parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), "9" * 400, 10**400, "²", "1²"])
def test_unreadable_numbers_are_no_time(value: object) -> None:
    assert timestamp(value) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"1" * 5000, "not valid JSON"),  # over Python's integer digit limit
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a": 1}\n' + b"[" * 100_000, "line 2 is not valid JSON"),
        (b'{"title": "x\\ud800"}', "unpaired UTF-16 surrogate"),
        (b'[{"a": 1}, {"\\udfff": 2}]', "unpaired UTF-16 surrogate"),
    ],
)
def test_json_beyond_python_limits_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        json_documents(body)


def test_a_surrogate_pair_is_text() -> None:
    assert json_documents(b'{"title": "\\ud83d\\ude00"}') == [{"title": "\U0001f600"}]


def test_a_record_too_deep_to_serialise_is_a_parse_error() -> None:
    """Between the depth json.loads reads and the depth a parser can write back out
    (both depend on the stack in use) lies a band that must still be a ParseError."""
    outcomes = set()
    for depth in range(1000, 900, -1):
        nested = b'{"a": ' * depth + b"1" + b"}" * depth
        body = b'{"eventType": "x", "uuid": "u", "d": ' + nested + b"}"
        try:
            OktaDetector().parse(body)
            outcomes.add("parsed")
        except ParseError as exc:
            outcomes.add("too deep" if "nested too deeply" in str(exc) else "shape")
    assert outcomes == {"too deep", "shape", "parsed"}


def test_builtin_and_virtual_windows_accounts_are_never_users() -> None:
    from integrations.detectors.common import ObservableBuilder

    found = ObservableBuilder()
    for name in (
        "NT AUTHORITY\\SYSTEM",
        "NT SERVICE\\MSSQLSERVER",
        "Window Manager\\DWM-1",
        "Font Driver Host\\UMFD-0",
        "IIS APPPOOL\\DefaultAppPool",
        "CORP\\WS-42$",
        "LOCAL SERVICE",
        "CORP\\alice",
        "bob@corp.example",
    ):
        found.user(name)
    assert found.build().users == ["CORP\\alice", "bob@corp.example"]
