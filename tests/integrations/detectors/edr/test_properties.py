"""Whatever arrives, each EDR parser either returns well-formed events or raises
ParseError: never another exception, never a value the database would refuse.

Besides arbitrary JSON, bytes and text, each parser gets its own realistic payloads with
fields replaced or removed at random, so the search reaches past the envelopes into every
field the parser reads."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.detectors.carbonblack import CarbonBlackDetector
from integrations.detectors.cisco_secure_endpoint import CiscoSecureEndpointDetector
from integrations.detectors.common import SEVERITIES
from integrations.detectors.crowdstrike import CrowdStrikeDetector
from integrations.detectors.defender import DefenderDetector
from integrations.detectors.sentinelone import SentinelOneDetector
from integrations.detectors.sophos import SophosDetector
from pipeline.errors import ParseError
from pipeline.plugins import Detector
from tests.integrations.detectors.edr.expect import PAYLOADS

PARSERS: dict[str, Callable[[], Detector]] = {
    "crowdstrike": CrowdStrikeDetector,
    "sentinelone": SentinelOneDetector,
    "carbonblack": CarbonBlackDetector,
    "defender": DefenderDetector,
    "sophos": SophosDetector,
    "cisco_secure_endpoint": CiscoSecureEndpointDetector,
}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# keys the parsers look for, so random objects sometimes look like vendor payloads
KEYS = st.sampled_from(
    [
        "metadata",
        "event",
        "eventType",
        "resources",
        "data",
        "items",
        "results",
        "value",
        "id",
        "threatId",
        "activityType",
        "threatInfo",
        "alertInfo",
        "ruleInfo",
        "event_type",
        "severity",
        "Severity",
        "SeverityName",
        "FineScore",
        "evidence",
        "relatedUser",
        "computer",
        "file",
        "network_info",
        "description",
        "title",
        "name",
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.text(alphabet="ab", min_size=250, max_size=300)  # over the columns' limits
    | st.sampled_from(
        [
            "",
            "-",
            "N/A",
            "None",
            "null",
            "10.0.0.1",
            "2001:db8::1",
            "8.0",
            "1e999",
            "²",
            "High",
            "malicious",
            "DetectionSummaryEvent",
            "IncidentSummaryEvent",
            "Outgoing connection from",
            "EGRESS",
            "CORP\\alice",
            "0" * 40,
            "2026-03-05T14:07:21.4+0100",
            " at '",
            "x at 'C:\\a'",
            "a" * 300,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


def _samples(vendor: str) -> list[Any]:
    """The JSON documents (and JSON Lines records) among a vendor's payload files."""
    found: list[Any] = []
    for path in sorted((PAYLOADS / vendor).iterdir()):
        text = path.read_text()
        try:
            found.append(json.loads(text))
        except ValueError:
            found.extend(json.loads(line) for line in text.splitlines() if line.strip())
    return found


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn, vendor: str) -> Any:
    """A real payload of ``vendor`` with a few fields replaced or removed, or with each
    of its scalar values replaced at random."""
    document = copy.deepcopy(draw(st.sampled_from(_samples(vendor))))
    if draw(st.booleans()):
        for path in list(_paths(document)):
            parent = document
            for step in path[:-1]:
                parent = parent[step]
            if not isinstance(parent[path[-1]], dict | list) and draw(st.booleans()):
                parent[path[-1]] = draw(scalars)
        return document
    for _ in range(draw(st.integers(1, 5))):
        paths = list(_paths(document))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return document


def check(parser: Detector, body: bytes) -> None:
    try:
        events = parser.parse(body)
    except ParseError:
        return
    assert events or events.skipped  # type: ignore[attr-defined]
    for event in events:
        assert event.severity in SEVERITIES
        # ingest fits over-long ids and vendor severities to their columns
        assert isinstance(event.external_id, str) and event.external_id.strip()
        assert event.vendor_severity is None or event.vendor_severity.strip()
        assert isinstance(event.title, str) and event.title.strip()
        assert event.occurred_at is None or event.occurred_at.utcoffset() is not None
        assert isinstance(event.raw, str)
        for kind, value in event.observables.items():
            assert isinstance(value, str), kind
            assert value.strip() and value.lower() not in {"none", "null", "n/a", "-"}, kind


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_any_json_either_parses_or_raises_parse_error(vendor: str) -> None:
    @SETTINGS
    @given(json_values)
    def run(value: object) -> None:
        check(PARSERS[vendor](), json.dumps(value).encode())

    run()


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_damaged_vendor_payloads_either_parse_or_raise_parse_error(vendor: str) -> None:
    @SETTINGS
    @given(st.lists(mutated(vendor), min_size=1, max_size=3), st.booleans())
    def run(documents: list[Any], as_lines: bool) -> None:
        if as_lines:
            body = "\n".join(json.dumps(d) for d in documents).encode()
        else:
            body = json.dumps(documents if len(documents) > 1 else documents[0]).encode()
        check(PARSERS[vendor](), body)

    run()


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_any_bytes_either_parse_or_raise_parse_error(vendor: str) -> None:
    @SETTINGS
    @given(st.binary(max_size=300))
    def run(body: bytes) -> None:
        check(PARSERS[vendor](), body)

    run()


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_any_text_lines_either_parse_or_raise_parse_error(vendor: str) -> None:
    @SETTINGS
    @given(st.lists(st.text(max_size=80), max_size=6))
    def run(lines: list[str]) -> None:
        check(PARSERS[vendor](), "\n".join(lines).encode("utf-8", "surrogatepass"))

    run()


@pytest.mark.parametrize("vendor", sorted(PARSERS))
@pytest.mark.parametrize("depth", [50, 900, 5000])
def test_deeply_nested_payloads_are_a_parse_error_or_parse(vendor: str, depth: int) -> None:
    """Nesting past what json (or the parser writing ``raw``) can follow is a ParseError."""
    for key in ("data", "event", "evidence", "items"):
        nested = "[" * depth + "1" + "]" * depth
        body = f'{{"id": "x", "title": "t", "event_type": "e", "{key}": {nested}}}'
        check(PARSERS[vendor](), body.encode())


@st.composite
def thinned(draw: st.DrawFn, vendor: str) -> Any:
    """A real payload of ``vendor`` with fields removed or set to null, as vendors do."""
    document = copy.deepcopy(draw(st.sampled_from(_samples(vendor))))
    for _ in range(draw(st.integers(1, 8))):
        paths = list(_paths(document))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.sampled_from([None, "", "N/A", [], {}]))
    return document


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_missing_and_null_fields_never_trip_the_parser(vendor: str) -> None:
    """A payload missing fields, or with nulls and empty values in them, parses, or is
    refused for a reason the parser states: never by an exception it did not expect
    (which the base class reports as "an unexpected shape")."""

    @SETTINGS
    @given(thinned(vendor))
    def run(document: Any) -> None:
        try:
            check(PARSERS[vendor](), json.dumps(document).encode())
            PARSERS[vendor]().parse(json.dumps(document).encode())
        except ParseError as exc:
            assert "unexpected shape" not in str(exc), exc

    run()
