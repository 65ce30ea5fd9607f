"""Every vendor detector refuses every other vendor's samples: a payload without its
vendor's identifying fields is a ParseError naming what was expected (a 422 and a dead
letter), never an alert read poorly, and never a delivery "skipped" as if it were its own.

The samples are the corpora beside the vendor tests (``*/payloads/<detector>/``), so a
detector or a sample added later is held to this too."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations import load_all
from pipeline.errors import ParseError
from pipeline.plugins import detectors

load_all()
HERE = Path(__file__).parent
# generic reads Fido's own JSON from any tool (its field_map maps other shapes onto it)
NOT_VENDORS = {"generic"}
SAMPLES = sorted(
    (folder.name, sample)
    for folder in HERE.glob("*/payloads/*")
    if folder.is_dir()
    for sample in folder.iterdir()
    if sample.is_file() and not sample.name.endswith(".expected.json")
)
VENDORS = sorted(
    name for name in detectors.names() if name not in NOT_VENDORS and not name.startswith("test_")
)
CASES = [
    pytest.param(detector, sample, id=f"{detector}<-{vendor}/{sample.name}")
    for detector in VENDORS
    for vendor, sample in SAMPLES
    if vendor != detector
]


def test_the_corpus_covers_every_vendor_detector() -> None:
    assert {vendor for vendor, _ in SAMPLES} >= set(VENDORS) - {"clamav", "fail2ban"}


@pytest.mark.parametrize(("detector", "sample"), CASES)
def test_a_detector_refuses_another_vendors_sample(detector: str, sample: Path) -> None:
    with pytest.raises(ParseError) as refused:
        detectors.get(detector)().parse(sample.read_bytes())
    assert str(refused.value).strip()


@pytest.mark.parametrize("detector", VENDORS)
def test_the_refusal_names_what_was_expected(detector: str) -> None:
    parser = detectors.get(detector)()
    expects = getattr(parser, "expects", None)
    if expects is None:  # a line-based detector: it names the lines it reads instead
        pytest.skip(f"{detector} reads log lines")
    with pytest.raises(ParseError) as refused:
        parser.parse(b'{"id": "x-1", "title": "from elsewhere", "severity": "high"}')
    assert str(refused.value).endswith(f"expected {expects}")


def test_the_generic_severity_error_lists_exactly_what_it_accepts() -> None:
    generic = detectors.get("generic")()
    with pytest.raises(ParseError) as refused:
        generic.parse(b'{"title": "t", "severity": "urgent"}')
    message = str(refused.value)
    listed = message.split("must be one of ", 1)[1].split(" (got", 1)[0].split(", ")
    assert listed == ["informational", "low", "medium", "high", "critical", "info"]
    for word in listed:  # each value named is taken
        [event] = generic.parse(f'{{"title": "t", "severity": "{word}"}}'.encode())
        assert event.severity == ("informational" if word == "info" else word)
