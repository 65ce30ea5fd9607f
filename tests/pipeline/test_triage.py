"""Triage end to end on a real database: correlation on every observable (with the
private-address rule and the policy's window, on a controllable clock), repeats, history,
suppressions with expiry, and the incident lifecycle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from integrations.detectors.generic import GenericDetector
from integrations.detectors.suricata import SuricataDetector
from pipeline import audit
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.errors import InputError, NotAuthorized
from pipeline.ingest import ingest
from pipeline.models import CloseVerdict, Event, Incident, IncidentKey, SuppressionHit
from pipeline.notify import NullNotifier
from pipeline.plugins import Detector
from pipeline.policy import (
    ActionPolicy,
    Allowlist,
    CorrelationPolicy,
    Policy,
    SuppressionMatch,
    SuppressionRule,
)
from pipeline.records import breakdown_of, history_of
from tests.pipeline.fakes import DirectoryEnricher, LockResponder

APPROVER = "UAPPROVER"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make(db: Database, clock: Clock, **policy: Any) -> Engine:
    return Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="test_lock")], **policy),
        enrichers=[DirectoryEnricher({"alice": {"display_name": "Alice"}})],
        responders={"test_lock": LockResponder()},
        notifier=NullNotifier(),
        approvers=[APPROVER],
        clock=clock,
    )


async def send(
    db: Database, engine: Engine, detector: Detector | None = None, **alert: Any
) -> list[int]:
    async with db.session() as session:
        result = await ingest(
            session=session,
            detector=detector or GenericDetector(),
            body=json.dumps(alert).encode(),
        )
    await engine.drain()
    return result.created


async def incidents(db: Database) -> list[Incident]:
    async with db.session() as session:
        return list((await session.exec(select(Incident).order_by(col(Incident.id)))).all())


def posted(engine: Engine) -> list[int | None]:
    return [i.id for i, _ in engine.incidents.notifier.published]  # type: ignore[attr-defined]


def eve(src: str, sid: int) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-30T09:00:00.000000+0000",
        "flow_id": 1000 + sid,
        "event_type": "alert",
        "src_ip": src,
        "src_port": 40000 + sid,
        "dest_ip": "10.20.30.41",
        "dest_port": 22,
        "proto": "TCP",
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": sid,
            "rev": 1,
            "signature": f"ET SCAN probe {sid}",
            "category": "Attempted Information Leak",
            "severity": 2,
        },
    }


# -- correlation ----------------------------------------------------------------------------


async def test_suricata_alerts_sharing_only_an_external_source_make_one_incident(
    db: Database,
) -> None:
    engine = make(db, Clock())
    for sid in (1, 2, 3):
        await send(db, engine, SuricataDetector(), **eve("198.51.100.23", sid))
    [incident] = await incidents(db)
    assert incident.event_count == 3
    assert len(set(posted(engine))) == 1  # one card, updated


async def test_a_shared_private_address_alone_does_not_join(db: Database) -> None:
    engine = make(db, Clock())
    await send(db, engine, SuricataDetector(), **eve("10.9.8.7", 1))
    await send(db, engine, SuricataDetector(), **eve("10.9.8.7", 2))
    assert [i.event_count for i in await incidents(db)] == [1, 1]
    # with a host in common they do join
    await send(db, engine, id="h1", title="a", host="pc-7", src_ip="10.9.8.7")
    await send(db, engine, id="h2", title="b", host="PC-7", src_ip="10.9.8.7")
    assert [i.event_count for i in await incidents(db)] == [1, 1, 2]


async def test_the_sensor_that_saw_alerts_never_joins_them(db: Database) -> None:
    """Every alert of one Suricata sensor names it (``host``): it is kept on the incident as
    its observer, but joins nothing and is never looked up."""
    engine = make(db, Clock())
    for sid, src in ((1, "198.51.100.23"), (2, "203.0.113.9")):
        await send(db, engine, SuricataDetector(), host="ids-sensor-01", **eve(src, sid))
    first, second = await incidents(db)
    assert (first.event_count, second.event_count) == (1, 1)
    assert first.observables["observers"] == ["ids-sensor-01"]
    assert "ids-sensor-01" not in json.dumps(first.enrichment)
    async with db.session() as session:
        keys = (await session.exec(select(IncidentKey.key))).all()
    assert keys and not any("ids-sensor-01" in key for key in keys)


async def test_policy_internal_networks_are_private_too(db: Database) -> None:
    engine = make(db, Clock(), privacy={"internal_networks": ["198.51.100.0/24"]})
    await send(db, engine, id="1", title="a", src_ip="198.51.100.23")
    await send(db, engine, id="2", title="b", src_ip="198.51.100.23")
    assert len(await incidents(db)) == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            {"hash": "44D88612FEA8A8F36DE82E1278ABB02F"},
            {"hash": "44d88612fea8a8f36de82e1278abb02f"},
        ),
        ({"domain": "evil.example.net"}, {"domain": "EVIL.example.net."}),
        ({"url": "https://evil.example.net/x"}, {"url": "https://evil.example.net/x"}),
        ({"user": "CORP\\alice"}, {"user": "alice@corp.example"}),
    ],
)
async def test_joins_on_every_observable_kind(
    db: Database, first: dict[str, str], second: dict[str, str]
) -> None:
    engine = make(db, Clock())
    await send(db, engine, id="1", title="a", **first)
    await send(db, engine, id="2", title="b", **second)
    [incident] = await incidents(db)
    assert incident.event_count == 2


async def test_join_on_is_the_policys_and_allowlisted_values_never_join(db: Database) -> None:
    engine = make(
        db,
        Clock(),
        correlation=CorrelationPolicy(join_on=["user", "host"]),
        allowlist=Allowlist(ips=["192.0.2.0/24"]),
    )
    await send(db, engine, id="1", title="a", hash="44d88612fea8a8f36de82e1278abb02f")
    await send(db, engine, id="2", title="b", hash="44d88612fea8a8f36de82e1278abb02f")
    assert len(await incidents(db)) == 2
    engine.reload(
        Policy(
            actions=[ActionPolicy(responder="test_lock")], allowlist=Allowlist(ips=["192.0.2.0/24"])
        )
    )
    await send(db, engine, id="3", title="c", src_ip="192.0.2.10")
    await send(db, engine, id="4", title="d", src_ip="192.0.2.10")
    assert len(await incidents(db)) == 4


async def test_the_window_is_measured_from_the_incidents_last_alert(db: Database) -> None:
    clock = Clock()
    engine = make(db, clock, correlation=CorrelationPolicy(window_minutes=60))
    await send(db, engine, id="1", title="a", user="bob")
    clock.advance(minutes=59)
    await send(db, engine, id="2", title="b", user="bob")
    clock.advance(minutes=59)  # 118 min after the first, 59 after the last: still joins
    await send(db, engine, id="3", title="c", user="bob")
    clock.advance(minutes=61)
    await send(db, engine, id="4", title="d", user="bob")
    assert [i.event_count for i in await incidents(db)] == [3, 1]


async def test_detectors_agreeing_score_for_it(db: Database) -> None:
    engine = make(db, Clock())
    await send(db, engine, SuricataDetector(), **eve("203.0.113.9", 9))
    await send(db, engine, id="2", title="b", severity="low", user="alice", src_ip="203.0.113.9")
    [incident] = await incidents(db)
    assert incident.detectors == ["suricata", "generic"]
    reasons = [line.reason for line in breakdown_of(incident.score_breakdown)]
    assert "2 detectors agree: suricata, generic" in reasons


# -- repeats and history --------------------------------------------------------------------


async def _received(db: Database, external_id: str, at: datetime) -> None:
    async with db.session() as session:
        await session.exec(
            update(Event).where(col(Event.external_id) == external_id).values(received_at=at)
        )
        await session.commit()


async def test_repeats_over_fidos_windows_raise_the_score(db: Database) -> None:
    clock = Clock()
    engine = make(db, clock, correlation=CorrelationPolicy(window_minutes=30))
    now = datetime.now(UTC)
    async with db.session() as session:  # an alert 13 h ago, then 20 min ago, on host pc-9
        for xid in ("old", "recent"):
            await ingest(
                session=session,
                detector=GenericDetector(),
                body=json.dumps({"id": xid, "title": "Beacon", "host": "pc-9"}).encode(),
            )
    await _received(db, "old", now - timedelta(hours=13))
    await engine.drain()  # both processed (the clock decides correlation, not receipt)
    await _received(db, "recent", now - timedelta(minutes=20))
    clock.now = now
    await send(db, engine, id="now", title="Beacon", host="pc-9")
    latest = (await incidents(db))[-1]
    history = history_of(latest.history)
    assert 13.0 <= history.repeat_hours < 13.1
    assert history.quiet_repeat  # last seen 20 min ago: update without paging
    reasons = [line.reason for line in breakdown_of(latest.score_breakdown)]
    assert any(r.startswith("the same alert has recurred for 13") for r in reasons)


async def test_a_users_closed_incidents_feed_the_next_score(db: Database) -> None:
    clock = Clock()
    engine = make(db, clock)
    await send(db, engine, id="1", title="a", severity="high", user="alice")
    await engine.incidents.close(
        incident_id=1, verdict=CloseVerdict.true_positive, actor=APPROVER, reason="confirmed"
    )
    clock.advance(minutes=5)
    await send(db, engine, id="2", title="b", severity="high", user="alice")
    first, second = await incidents(db)
    assert second.previous_id == first.id  # a closed incident takes no new events
    assert second.event_count == 1 and first.event_count == 1
    reasons = [line.reason for line in breakdown_of(second.score_breakdown)]
    assert "user alice had 1 earlier true-positive incident" in reasons
    assert second.score == first.score + 10


# -- lifecycle --------------------------------------------------------------------------------


async def test_closing_is_authorised_audited_and_done_once(db: Database) -> None:
    engine = make(db, Clock())
    await send(db, engine, id="1", title="a", severity="critical", user="alice")
    with pytest.raises(NotAuthorized):
        await engine.incidents.close(
            incident_id=1, verdict=CloseVerdict.false_positive, actor="UOTHER"
        )
    closed = await engine.incidents.close(
        incident_id=1, verdict=CloseVerdict.false_positive, actor=APPROVER, reason="test rule"
    )
    assert (closed.status, closed.verdict, closed.closed_by) == (
        "closed",
        "false_positive",
        APPROVER,
    )
    with pytest.raises(InputError, match="already closed"):
        await engine.incidents.close(incident_id=1, verdict=CloseVerdict.benign, actor=APPROVER)
    with pytest.raises(InputError, match="closed"):
        await engine.incidents.approve(
            incident_id=1, responder="test_lock", target="alice", actor=APPROVER
        )
    assert await engine.refresh(1) is None  # a closed incident is not triaged again
    async with db.session() as session:
        verbs = [e.verb for e in await audit.entries(session)]
    assert "refused" in verbs and verbs.count("incident.closed") == 1


# -- suppressions ---------------------------------------------------------------------------


def noisy_rule(expires: datetime) -> SuppressionRule:
    return SuppressionRule(
        name="scanner",
        match=SuppressionMatch(detector="generic", title="Port scan*", ip="203.0.113.0/24"),
        owner="secops",
        reason="the quarterly pen test",
        expires=expires,
    )


async def test_a_policy_suppression_silences_until_it_expires(db: Database) -> None:
    clock = Clock()
    engine = make(db, clock, suppressions=[noisy_rule(START + timedelta(hours=1))])
    await send(db, engine, id="1", title="Port scan from outside", src_ip="203.0.113.5")
    [incident] = await incidents(db)
    assert incident.suppressed_by == "policy:scanner" and incident.decision == "record"
    assert posted(engine) == []
    await send(db, engine, id="2", title="Port scan again", src_ip="203.0.113.5")
    assert posted(engine) == []  # attached to the suppressed incident, still silent
    clock.advance(hours=2)  # expired: a new alert pages
    await send(db, engine, id="3", title="Port scan later", src_ip="203.0.113.77")
    assert len(posted(engine)) == 1
    async with db.session() as session:
        [hit] = (await session.exec(select(SuppressionHit))).all()
        events = (await session.exec(select(Event).order_by(col(Event.id)))).all()
    assert (hit.key, hit.hits) == ("policy:scanner", 2)
    assert [e.suppressed_by for e in events] == ["policy:scanner", "policy:scanner", None]
    assert all(e.status == "done" for e in events)  # stored and processed, not dropped


async def test_a_false_positive_close_with_a_suppression_silences_the_next_one(
    db: Database,
) -> None:
    clock = Clock()
    engine = make(db, clock)
    await send(db, engine, id="1", title="Odd login", severity="critical", user="alice")
    await engine.incidents.close(incident_id=1, verdict=CloseVerdict.false_positive, actor=APPROVER)
    made = await engine.incidents.suppress_like(incident_id=1, actor=APPROVER, days=7)
    assert made.match.model_dump(exclude_none=True) == {
        "user": "alice",
        "detector": "generic",
        "title": "Odd login",
    }
    assert made.owner == APPROVER and made.reason == "false positive, incident #1"
    await engine.flush()  # the card updates for the close and the suppression
    before = len(posted(engine))
    clock.advance(days=1)
    await send(db, engine, id="2", title="Odd login", severity="critical", user="alice")
    assert len(posted(engine)) == before
    assert (await incidents(db))[-1].suppressed_by == made.key
    [listed] = await engine.incidents.suppressions()
    assert listed.hits == 1
    clock.advance(days=7)  # expired
    await send(db, engine, id="3", title="Odd login", severity="critical", user="alice")
    assert len(posted(engine)) == before + 1


async def test_a_removed_suppression_stops_at_once(db: Database) -> None:
    engine = make(db, Clock())
    made = await engine.incidents.add_suppression(
        match=SuppressionMatch(host="pc-1"), actor=APPROVER, reason="reimaging", days=3
    )
    await send(db, engine, id="1", title="a", host="pc-1.corp.example")
    assert posted(engine) == []
    with pytest.raises(NotAuthorized):
        await engine.incidents.remove_suppression(
            suppression_id=int(made.key.split(":")[1]), actor="UOTHER"
        )
    await engine.incidents.remove_suppression(
        suppression_id=int(made.key.split(":")[1]), actor=APPROVER
    )
    assert await engine.incidents.suppressions() == []
    await send(db, engine, id="2", title="b", host="pc-2")
    assert len(posted(engine)) == 1


def test_a_suppression_must_match_something() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        SuppressionMatch()
