"""``pipeline/stats.py`` on SQLite and PostgreSQL: counts within the window only, mean times
from an incident's creation, and auto-action precision from verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline import audit, stats
from pipeline.db import Database
from pipeline.models import Action, Event, Incident

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _event(n: int, detector: str, at: datetime, incident: int, **kw: object) -> Event:
    return Event(
        detector=detector,
        external_id=str(n),
        title=f"alert {n}",
        raw="{}",
        received_at=at,
        status="done",
        incident_id=incident,
        **kw,
    )


async def _store(db: Database) -> None:
    incidents = [
        # id, created, decision, verdict
        (1, NOW - 120 * MIN, "auto_act", "true_positive"),
        (2, NOW - 60 * MIN, "ask_approval", "false_positive"),
        (3, NOW - 180 * MIN, "auto_act", "benign"),
        (4, NOW - timedelta(days=10), "auto_act", "false_positive"),  # outside the window
        (5, NOW - 30 * MIN, "notify", None),
    ]
    async with db.session() as session:
        for number, created, decision, verdict in incidents:
            session.add(
                Incident(
                    id=number,
                    title=f"incident {number}",
                    created_at=created,
                    updated_at=created,
                    decision=decision,
                    verdict=verdict,
                    status="closed" if verdict else "open",
                )
            )
        await session.flush()
        session.add_all(
            [
                _event(1, "edr", NOW - 120 * MIN, 1),
                _event(2, "edr", NOW - 60 * MIN, 2),
                _event(3, "ids", NOW - 30 * MIN, 5, suppressed_by="db:1"),
                _event(4, "ids", NOW - timedelta(days=10), 4),
            ]
        )

        def action(number: int, incident: int, by: str, approvals: list[str], at: datetime) -> None:
            session.add(
                Action(
                    incident_id=incident,
                    responder="lock",
                    target=f"user{number}",
                    requested_by=by,
                    approved_by=approvals[0] if approvals else None,
                    approvals=approvals,
                    status="succeeded",
                    idempotency_key=f"k{number}",
                    created_at=at,
                    updated_at=at,
                )
            )

        action(1, 1, "fido", [], NOW - 119 * MIN)
        action(2, 2, "UBOB", ["UBOB"], NOW - 30 * MIN)
        action(3, 3, "fido", [], NOW - 178 * MIN)
        action(4, 4, "fido", [], NOW - timedelta(days=10))
        action(5, 5, "UBOB", ["UBOB"], NOW - 20 * MIN)

        def entry(actor: str, verb: str, incident: int, at: datetime) -> None:
            made = audit.record(
                session, actor=actor, verb=verb, target="lock:x", incident_id=incident
            )
            made.at = at  # the hash, made at commit, covers it

        entry("fido", "action.succeeded", 1, NOW - 119 * MIN)  # contained after 1 min
        entry("UANALYST", "incident.closed", 1, NOW - 110 * MIN)  # acknowledged after 10
        entry("UBOB", "action.succeeded", 2, NOW - 30 * MIN)  # ack, approve, contain: 30
        entry("UANALYST", "incident.closed", 2, NOW - 20 * MIN)
        entry("fido", "action.succeeded", 3, NOW - 178 * MIN)  # contained after 2
        entry("UCAROL", "incident.closed", 3, NOW - 160 * MIN)  # acknowledged after 20
        entry("UEVE", "refused", 5, NOW - 25 * MIN)  # a refusal acknowledges nothing
        entry("fido:expiry", "action.undo.ok", 5, NOW - 24 * MIN)  # nor does Fido
        entry("operator:root", "incident.closed", 5, NOW - 23 * MIN)  # nor a shell
        entry("UBOB", "action.succeeded", 4, NOW - timedelta(days=10))  # outside
        await session.commit()


async def test_stats_over_a_week(db: Database) -> None:
    await _store(db)
    found = await stats.stats(db, now=NOW)
    assert found.since == NOW - timedelta(days=7) and found.until == NOW
    assert found.alerts == 3
    assert found.alerts_by_detector == {"edr": 2, "ids": 1}
    assert found.suppressed_alerts == 1
    assert found.incidents == 4 and found.open_incidents == 1
    assert found.by_decision == {"auto_act": 2, "ask_approval": 1, "notify": 1}
    assert found.by_verdict == {"true_positive": 1, "false_positive": 1, "benign": 1}
    assert found.actions == {"lock": {"succeeded": 4}}
    assert found.to_acknowledge == 20 * MIN  # (10 + 30 + 20) / 3
    assert found.to_approve == 30 * MIN  # incident 2 only
    assert found.to_contain == 11 * MIN  # (1 + 30 + 2) / 3
    assert found.precision == stats.Precision(true_positives=1, judged=2, acted=2)
    assert found.precision.value == 0.5


async def test_a_narrow_window_and_an_empty_database(db: Database) -> None:
    empty = await stats.stats(db, now=NOW)
    assert (empty.alerts, empty.incidents, empty.actions) == (0, 0, {})
    assert empty.to_acknowledge is None and empty.precision.value is None
    await _store(db)
    hour = await stats.stats(db, now=NOW, window=timedelta(minutes=90))
    assert hour.incidents == 2  # 2 and 5
    assert hour.alerts_by_detector == {"edr": 1, "ids": 1}
    assert hour.to_acknowledge == 30 * MIN and hour.precision.acted == 0
    capped = await stats.stats(db, now=NOW, window=timedelta(days=5000))
    assert capped.since == NOW - stats.MAX_WINDOW and capped.incidents == 5
