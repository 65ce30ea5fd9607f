from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.detectors.generic import GenericDetector
from pipeline.errors import ConfigError, ParseError
from pipeline.plugins import Context, build_plugin, detectors


def parse(obj: object, **kw: object) -> list:
    return GenericDetector(**kw).parse(json.dumps(obj).encode())  # type: ignore[arg-type]


def test_full_alert_becomes_one_event_with_all_observables() -> None:
    body = {
        "id": "a-1",
        "title": " Impossible travel ",
        "severity": "CRITICAL",
        "occurred_at": "2026-11-28T01:02:03Z",
        "user": "alice",
        "host": "laptop-042",
        "src_ip": "203.0.113.9",
        "dst_ip": "10.0.0.5",
        "hash": "44d88612fea8a8f36de82e1278abb02f",
        "domain": "evil.test",
        "url": "http://evil.test/x",
    }
    [event] = parse(body)
    assert event.external_id == "a-1"
    assert event.title == "Impossible travel"
    assert event.severity == "critical"
    assert event.occurred_at == datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)
    assert event.observables.users == ["alice"]
    assert event.observables.ips == ["203.0.113.9", "10.0.0.5"]
    assert event.observables.hashes == ["44d88612fea8a8f36de82e1278abb02f"]
    assert json.loads(event.raw) == body


def test_raw_is_kept_verbatim_for_a_single_object() -> None:
    body = b'{"title":   "x",  "user": "alice"}'
    [event] = GenericDetector().parse(body)
    assert event.raw == body.decode()


def test_missing_fields_are_absent_and_id_is_a_stable_fingerprint() -> None:
    [first] = parse({"title": "only a title"})
    [second] = parse({"title": "only a title"})
    assert first.external_id == second.external_id
    assert first.external_id.startswith("sha256:")
    assert first.severity == "medium"
    assert first.occurred_at is None
    assert first.observables.is_empty()


def test_lists_and_field_map() -> None:
    detector_kw = {"field_map": {"user": "actor.name", "title": "rule.name"}}
    [event] = parse(
        {"rule": {"name": "Mapped"}, "actor": {"name": ["alice", "bob", "alice"]}}, **detector_kw
    )
    assert event.title == "Mapped"
    assert event.observables.users == ["alice", "bob"]


def test_unknown_field_in_map_is_a_config_error() -> None:
    options = {"field_map": {"nonsense": "a.b"}}
    with pytest.raises(ConfigError, match="^detector generic: option 'field_map': names unknown"):
        build_plugin(detectors, "generic", options, Context())


def test_json_lines_give_one_event_per_line() -> None:
    body = b'{"id": 1, "title": "a"}\n\n{"id": 2, "title": "b", "user": "bob"}\n'
    events = GenericDetector().parse(body)
    assert [(e.external_id, e.raw) for e in events] == [
        ("1", '{"id":1,"title":"a"}'),
        ("2", '{"id":2,"title":"b","user":"bob"}'),
    ]


def test_array_gives_one_event_per_object() -> None:
    events = parse([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}])
    assert [e.external_id for e in events] == ["1", "2"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'"text"', "expected JSON objects"),
        (b"", "body is empty"),
        (b'{"title": "a"}\n{"title"', "line 2 is not valid JSON"),
        (b"[1, 2]", "alert objects only"),
        (b'{"severity": "high"}', "'title' is required"),
        (b'{"title": "x", "severity": "urgent"}', "'severity' must be one of"),
        (b'{"title": "x", "src_ip": "not-an-ip"}', "not an IP address"),
        (b'{"title": "x", "occurred_at": "yesterday"}', "not an ISO 8601 time"),
        (b'{"title": "x", "user": {"name": "a"}}', "must be a string"),
        (b'{"title": "x", "id": [1]}', "'id' must be"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_payloads_raise_parse_error_with_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        GenericDetector().parse(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_any_json_either_parses_or_raises_parse_error(value: object) -> None:
    try:
        GenericDetector().parse(json.dumps(value).encode())
    except ParseError:
        pass


@given(
    st.dictionaries(
        st.sampled_from(
            ["id", "title", "severity", "occurred_at", "user", "host", "src_ip", "hash"]
        ),
        json_values,
    )
)
def test_alert_shaped_json_either_parses_or_raises_parse_error(value: dict) -> None:
    try:
        GenericDetector().parse(json.dumps(value).encode())
    except ParseError:
        pass


@given(st.binary(max_size=200))
def test_any_bytes_either_parse_or_raise_parse_error(body: bytes) -> None:
    try:
        GenericDetector().parse(body)
    except ParseError:
        pass
