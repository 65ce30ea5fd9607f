"""The pollers' time watermark and its nanosecond timestamps
(``integrations/sources/http_retry.py``; sending and retrying are tested in
``tests/integrations/test_http.py``)."""

from __future__ import annotations

import pytest

from integrations.sources.http_retry import Watermark, iso_timestamp, timestamp_key
from pipeline.errors import ConfigError


def test_timestamps_compare_to_the_nanosecond_and_across_zones() -> None:
    key = timestamp_key
    assert key("2026-11-28T12:00:00.123456789Z") > key("2026-11-28T12:00:00.12345678Z")
    assert key("2026-11-28T12:00:00.1Z") == key("2026-11-28T12:00:00.100000000Z")
    assert key("2026-11-28T14:00:00+02:00") == key("2026-11-28T12:00:00Z")
    assert key("2026-11-28T12:00:00") == key("2026-11-28T12:00:00Z")
    assert key("2026-11-28T11:59:59.999999999Z") < key("2026-11-28T12:00:00Z")
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "2026-11-28", 1764331200, None):
        assert key(bad) is None
    assert iso_timestamp(" 2026-11-28T12:00:00Z ") == "2026-11-28T12:00:00Z"
    with pytest.raises(ConfigError):
        iso_timestamp("2026-11-28T12:00:00Z' OR 'a'='a")


def test_watermark_keeps_the_ids_at_the_newest_time() -> None:
    t1, t2 = "2026-11-28T12:00:01.000000001Z", "2026-11-28T12:00:02Z"
    mark = Watermark().advance([("a", t1), ("b", t2), ("c", t2), ("d", "garbage")])
    assert mark == Watermark(t2, frozenset({"b", "c"}))
    assert mark.delivered("b", "2026-11-28T12:00:02.000Z")  # same instant, other spelling
    assert not mark.delivered("b", "2026-11-28T12:00:03Z")  # b changed again since
    assert not mark.delivered("z", t2)
    assert mark.advance([("e", t1)]) == mark  # older news does not move it back
    assert mark.advance([("e", t2)]).ids == {"b", "c", "e"}
    assert Watermark.from_cursor(mark.to_cursor()) == mark
    assert Watermark.from_cursor({}) == Watermark() and Watermark().to_cursor() == {}
    assert Watermark.from_cursor({"updated_at": "junk", "ids_at_time": ["x"]}) == Watermark()
