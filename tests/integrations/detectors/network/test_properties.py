"""Whatever arrives, each vendor parser either returns well-formed events or raises
ParseError: never another exception, never a value the database would refuse.

Besides arbitrary JSON, bytes and text, each parser gets its own realistic payloads with
random fields replaced or removed, so the search reaches past the envelopes into every
field the parser reads."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.detectors.common import SEVERITIES
from integrations.detectors.guardduty import GuardDutyDetector
from integrations.detectors.okta import OktaDetector
from integrations.detectors.panos import PanOSDetector
from integrations.detectors.suricata import SuricataDetector
from integrations.detectors.zeek import ZeekDetector
from pipeline.errors import ParseError
from pipeline.plugins import Detector
from tests.integrations.detectors.network.expect import PAYLOADS

PARSERS: dict[str, Callable[[], Detector]] = {
    "suricata": SuricataDetector,
    "zeek": ZeekDetector,
    "guardduty": GuardDutyDetector,
    "panos": PanOSDetector,
    "okta": OktaDetector,
}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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
            "[::1]",
            "8.0",
            "1e999",
            "²",
            "2026-03-05T14:07:21.4+0100",
            "CORP\\alice",
            "x.example.com",
            "\ud800x",  # valid JSON as an escape, but no text
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)


def _samples(vendor: str) -> list[Any]:
    """The JSON documents (and JSON Lines records) among a vendor's payload files."""
    found: list[Any] = []
    for path in sorted((PAYLOADS / vendor).iterdir()):
        text = path.read_text()
        try:
            found.append(json.loads(text))
        except ValueError:
            for line in text.splitlines():
                if line.startswith("{"):
                    found.append(json.loads(line))
    return found


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
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
    of its values replaced at random."""
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
        assert isinstance(event.external_id, str) and event.external_id.strip()  # ingest fits it
        assert event.vendor_severity is None or 0 < len(event.vendor_severity) <= 64
        assert event.title.strip()
        assert event.occurred_at is None or event.occurred_at.utcoffset() is not None
        for kind, value in event.observables.items():
            assert value.strip() and value.lower() not in {"none", "null", "n/a", "-"}, kind
        stored = [event.raw, event.title, event.external_id, event.vendor_severity or ""]
        for text in [*stored, event.observables.model_dump_json()]:
            text.encode("utf-8")  # what the database stores must be text


@pytest.mark.parametrize("vendor", sorted(PARSERS))
def test_any_json_either_parses_or_raises_parse_error(vendor: str) -> None:
    @SETTINGS
    @given(json_values)
    def run(value: object) -> None:
        check(PARSERS[vendor](), json.dumps(value).encode())

    run()


@pytest.mark.parametrize("vendor", ["suricata", "zeek", "guardduty", "okta"])
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


def _threat_lines() -> list[tuple[str, list[str]]]:
    """(syslog header, CSV fields) of every THREAT line among the PAN-OS payloads."""
    lines = []
    for path in sorted((PAYLOADS / "panos").iterdir()):
        for line in path.read_text().splitlines():
            at = line.find(",THREAT,")
            if at > 0:
                start = line.rfind(" ", 0, line.find(",")) + 1
                lines.append((line[:start], next(csv.reader([line[start:]]))))
    return lines


@SETTINGS
@given(
    st.sampled_from(_threat_lines()),
    st.dictionaries(
        st.integers(0, 115),
        st.text(max_size=24) | st.sampled_from(["", "THREAT", "(9999)", "x(1)", "::1", "Low"]),
        max_size=6,
    ),
    st.integers(0, 120),
)
def test_damaged_threat_lines_either_parse_or_raise_parse_error(
    sample: tuple[str, list[str]], changes: dict[int, str], keep: int
) -> None:
    header, fields = sample
    fields = list(fields)
    for index, value in changes.items():
        if index < len(fields):
            fields[index] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields[:keep] or [""])
    check(PanOSDetector(), (header + buffer.getvalue()).encode("utf-8", "surrogatepass"))
