"""What the API pollers share besides sending: their option types, and the time watermark
they resume from.

Sending, retrying (429 with ``Retry-After``, 5xx and timeouts with capped backoff) and
reading the vendor's error words are ``integrations/http/``'s: a poller holds one
:class:`~integrations.http.VendorHTTP` with the default :class:`RetryPolicy` (re-exported
here), since a poll runs unattended and a poll that gives up is simply tried again at the
next interval.

Resuming: the vendors list alerts ordered by their last-update time, and several alerts
can share one timestamp. A poller that resumed from "after the last time" would lose the
ones at that time it had not reached yet; one that resumed from "at or after" would deliver
some twice. :class:`Watermark` keeps the last time *and* the ids already delivered at it,
so the poller asks for "at or after" and skips exactly those.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from integrations.http import BaseURL, RetryPolicy
from pipeline.errors import ConfigError

__all__ = [
    "ApiBaseUrl",
    "LookbackHours",
    "PageSize",
    "RetryPolicy",
    "Watermark",
    "iso_timestamp",
    "timestamp_key",
]

log = logging.getLogger(__name__)

# A vendor API's base URL option (see integrations/http/).
ApiBaseUrl = BaseURL
# How many items one request asks for: 1 to the vendors' maximum, 1000.
PageSize = Annotated[int, Field(ge=1, le=1000, strict=True)]
# How far back the very first poll looks, in hours.
LookbackHours = Annotated[float, Field(ge=0, strict=True)]


_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


def timestamp_key(value: object) -> tuple[int, int] | None:
    """A sortable (epoch seconds, nanoseconds) for an ISO 8601 time, or None.

    The vendors write up to nanoseconds (``2024-05-01T12:00:00.123456789Z``), more than
    ``datetime`` keeps, and not always with the same number of digits, so neither
    ``fromisoformat`` nor comparing the strings is right. A time without an offset is UTC.
    """
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone is None or zone.upper() == "Z" else zone
    try:
        moment = datetime.fromisoformat(whole.replace(" ", "T") + zone)
    except ValueError:
        return None
    return int(moment.timestamp()), int((fraction or "0").ljust(9, "0"))


def iso_timestamp(value: str) -> str:
    """``value`` if it is an ISO 8601 time; ConfigError otherwise. Used before a cursor
    time goes into a vendor's query language, so nothing else can."""
    if timestamp_key(value) is None:
        raise ConfigError(f"not an ISO 8601 time: {value[:40]!r}")
    return value.strip()


@dataclass(frozen=True)
class Watermark:
    """The newest update time delivered so far and the ids delivered at exactly it."""

    time: str | None = None
    ids: frozenset[str] = frozenset()

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> Watermark:
        time = cursor.get("updated_at")
        ids = cursor.get("ids_at_time") or []
        if not isinstance(time, str) or timestamp_key(time) is None:
            return cls()
        return cls(time, frozenset(str(i) for i in ids))

    def to_cursor(self) -> dict[str, Any]:
        if self.time is None:
            return {}
        return {"updated_at": self.time, "ids_at_time": sorted(self.ids)}

    def delivered(self, item_id: str, item_time: object) -> bool:
        """Whether this version of the item (its id at its update time) went out already."""
        key = timestamp_key(item_time)
        return key is not None and key == timestamp_key(self.time) and item_id in self.ids

    def advance(self, items: Iterable[tuple[str, object]]) -> Watermark:
        """The watermark after delivering ``items`` (id, update time); items whose time
        cannot be read are delivered but do not move it."""
        time, ids = self.time, set(self.ids)
        best = timestamp_key(time)
        for item_id, item_time in items:
            key = timestamp_key(item_time)
            if key is None:
                log.warning("item %s has no readable update time %r", item_id, item_time)
                continue
            if best is None or key > best:
                time, best, ids = str(item_time).strip(), key, {item_id}
            elif key == best:
                ids.add(item_id)
        return Watermark(time, frozenset(ids))
