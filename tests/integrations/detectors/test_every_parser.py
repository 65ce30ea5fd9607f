"""Every registered detector — today's and any added later — either parses what it is given
or raises its own ParseError: never another exception, never a half-made event."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations import load_all
from pipeline.errors import ParseError
from pipeline.models import Severity
from pipeline.plugins import ParsedEvent, detectors

load_all()
NAMES = [n for n in detectors.names() if not n.startswith("test_")]
SEVERITIES = {s.value for s in Severity}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
log_lines = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)
    | st.sampled_from(
        [
            "Sat Nov 28 01:02:03 2026 -> /tmp/x: Eicar-Test FOUND",
            "2026-11-28 01:02:03,456 fail2ban.actions [1]: NOTICE [sshd] Ban 192.0.2.1",
            "1,2026/11/28 01:02:03,0123,THREAT,url,2561,2026/11/28 01:02:03,10.0.0.1,8.8.8.8",
        ]
    ),
    max_size=5,
).map(lambda lines: "\n".join(lines).encode())


def check(name: str, body: bytes) -> None:
    try:
        events = detectors.get(name)().parse(body)
    except ParseError:
        return
    assert isinstance(events, list)
    assert events or events.skipped  # type: ignore[attr-defined]
    for event in events:
        assert isinstance(event, ParsedEvent)
        assert event.external_id and event.title
        assert event.severity in SEVERITIES
        assert "None" not in event.observables.users + event.observables.hosts


def test_every_built_in_detector_is_covered() -> None:
    assert len(NAMES) >= 14


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_any_json(name: str, value: object) -> None:
    check(name, json.dumps(value).encode())


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300) | log_lines)
def test_any_bytes_or_lines(name: str, body: bytes) -> None:
    check(name, body)
