"""The corpus recall (``recall.py``) holds: every expected-observables file matches its
sample's events, and no detector falls below the floor it reaches today."""

from __future__ import annotations

import json
from pathlib import Path

from integrations import load_all
from tests.integrations.detectors import recall

load_all()
FLOOR = 0.9


def test_every_detector_with_expected_observables_keeps_its_recall() -> None:
    totals = recall.measure()
    assert len(totals) >= 18
    low = {name: hit / total for name, (hit, total) in totals.items() if hit < FLOOR * total}
    assert low == {}


def test_every_sample_that_holds_alerts_has_its_expected_observables() -> None:
    missing = [
        str(sample)
        for name, sample in recall.samples()
        if recall.parsed(name, sample) and not recall.expected_path(sample).exists()
    ]
    assert missing == []


def test_a_missed_observable_lowers_the_recall(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "x" / "payloads" / "generic"
    folder.mkdir(parents=True)
    (folder / "one.json").write_text('{"title": "t", "user": "alice", "src_ip": "192.0.2.1"}')
    (folder / "one.json.expected.json").write_text(
        json.dumps([{"users": ["CORP\\alice"], "ips": ["192.0.2.1", "192.0.2.2"]}])
    )
    monkeypatch.setattr(recall, "HERE", tmp_path)
    assert recall.measure() == {"generic": (2, 3)}  # alice is CORP\alice; .2 was missed
