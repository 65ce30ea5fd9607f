"""What the remote-source tests share: readers of Fido's database, a sleep that does not
wait, and two small detectors (registered under test names) for the vendor API bodies,
since the real ``crowdstrike`` and ``sentinelone`` parsers live elsewhere."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, select

from pipeline.db import Database
from pipeline.errors import ParseError
from pipeline.models import DeadLetter, Event, SourceCursor
from pipeline.observables import Observables
from pipeline.plugins import DetectorBase, ParsedEvent, detectors
from pipeline.sources import cursor_of

__all__ = ["Sleeps", "cursor_of", "dead_letters", "last_error", "stored_events"]


async def stored_events(db: Database, detector: str | None = None) -> list[Event]:
    """Every stored event, oldest first."""
    async with db.session() as session:
        query = select(Event).order_by(col(Event.id))
        if detector is not None:
            query = query.where(Event.detector == detector)
        return list((await session.exec(query)).all())


async def dead_letters(db: Database) -> list[DeadLetter]:
    async with db.session() as session:
        return list((await session.exec(select(DeadLetter).order_by(col(DeadLetter.id)))).all())


async def last_error(db: Database, name: str) -> str | None:
    async with db.session() as session:
        row = await session.get(SourceCursor, name)
        return row.last_error if row else None


class Sleeps:
    """An injectable ``sleep`` that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _body(body: bytes, key: str) -> list[dict[str, Any]]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ParseError(f"not JSON: {exc}") from None
    items = document.get(key) if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ParseError(f"no {key!r} list")
    return items


@detectors.register("test_falcon_alerts")
class FalconAlertsDetector(DetectorBase):
    """Reads a PostEntitiesAlertsV2 body: one event per alert, keyed by composite_id."""

    name = "test_falcon_alerts"

    def parse(self, body: bytes) -> list[ParsedEvent]:
        return [
            ParsedEvent(
                external_id=alert["composite_id"],
                title=alert["display_name"],
                severity=alert["severity_name"].lower(),
                raw=json.dumps(alert),
                observables=Observables(
                    users=[alert["user_name"]], hosts=[alert["device"]["hostname"]]
                ),
            )
            for alert in _body(body, "resources")
        ]


@detectors.register("test_s1_threats")
class S1ThreatsDetector(DetectorBase):
    """Reads a GET /threats body: one event per threat, keyed by its id."""

    name = "test_s1_threats"

    def parse(self, body: bytes) -> list[ParsedEvent]:
        return [
            ParsedEvent(
                external_id=threat["id"],
                title=threat["threatInfo"]["threatName"],
                severity="high",
                raw=json.dumps(threat),
                observables=Observables(
                    users=[threat["agentDetectionInfo"]["agentLastLoggedInUserName"]],
                    hosts=[threat["agentRealtimeInfo"]["agentComputerName"]],
                ),
            )
            for threat in _body(body, "data")
        ]
