"""The reads ``/fido``, App Home and the command line share (``pipeline/reads.py``), on
SQLite and PostgreSQL, and ``fido incidents`` / ``fido stats`` on the command line."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from pipeline import audit, reads, stats
from pipeline import db as database
from pipeline.db import Database
from pipeline.incidents import IncidentService
from pipeline.models import (
    Action,
    Control,
    DeferredLookup,
    Event,
    Incident,
    SourceCursor,
)
from pipeline.people import NoPeople
from pipeline.policy import ActionPolicy, Policy, SourcePolicy
from pipeline.records import EnrichmentResult, EnrichmentStatus, dump_enrichment
from tests.pipeline.fakes import DirectoryEnricher, LockResponder
from tests.pipeline.lookups.fakes import Clock, ReputationLookup, Sleeps
from tests.pipeline.lookups.helpers import policy as lookup_policy
from tests.pipeline.lookups.helpers import wrap

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Groups(NoPeople):
    """Slack user groups as the incident service asks for them; ``down`` fails like Slack."""

    def __init__(self, members: dict[str, set[str]], *, down: bool = False) -> None:
        self.members, self.down = members, down

    async def in_group(self, user_id: str, group_id: str) -> bool:
        if self.down:
            raise RuntimeError("usergroups.users.list: 500")
        return user_id in self.members.get(group_id, set())


async def _incident(db: Database, number: int, **fields: object) -> None:
    values: dict[str, object] = {
        "title": f"incident {number}",
        "created_at": NOW - timedelta(hours=number),
        "updated_at": NOW - timedelta(hours=number),
        **fields,
    }
    async with db.session() as session:
        session.add(Incident(id=number, **values))
        await session.commit()


async def test_incidents_open_mine_today(db: Database) -> None:
    await _incident(db, 1, score=40)
    await _incident(db, 2, score=90)
    await _incident(db, 3, score=95, status="closed", verdict="benign")
    await _incident(db, 30, score=99)  # 30 hours old
    async with db.session() as session:
        audit.record(session, actor="UANN", verb="incident.closed", target="x", incident_id=3)
        audit.record(session, actor="UANN", verb="refused", target="approve", incident_id=2)
        audit.record(session, actor="UBOB", verb="action.denied", target="x", incident_id=1)
        await session.commit()

    async def ids(which: reads.Which, actor: str | None = None, limit: int = 20) -> list[int]:
        found = await reads.incidents(db, which=which, now=NOW, actor=actor, limit=limit)
        return [i.id for i in found if i.id is not None]

    assert await ids(reads.Which.open) == [30, 2, 1]
    assert await ids(reads.Which.open, limit=2) == [30, 2]
    assert await ids(reads.Which.today) == [3, 2, 1]
    assert await ids(reads.Which.mine, "UANN") == [3]  # a refusal is not acting on it
    assert await ids(reads.Which.mine, "UBOB") == [1]
    assert await ids(reads.Which.mine, "x' OR '1'='1") == []  # bound, not spliced
    with pytest.raises(ValueError):
        await ids(reads.Which.mine)


async def test_timeline_merges_events_actions_and_clicks(db: Database) -> None:
    await _incident(db, 1)
    async with db.session() as session:
        for n, minutes in ((1, 0), (2, 5)):
            session.add(
                Event(
                    detector="edr",
                    external_id=str(n),
                    title=f"alert {n}",
                    raw="{}",
                    severity="high",
                    received_at=NOW + timedelta(minutes=minutes),
                    incident_id=1,
                )
            )
        for actor, verb, minutes, detail in (
            ("fido", "incident.scored", 0, {"score": 50}),
            ("UANN", "action.succeeded", 2, {"result": "locked bob"}),
            ("UEVE", "refused", 3, {}),
            ("fido", "incident.refreshed", 4, {"score": 70, "decision": "ask_approval"}),
        ):
            entry = audit.record(
                session, actor=actor, verb=verb, target="lock:bob", incident_id=1, **detail
            )
            entry.at = NOW + timedelta(minutes=minutes)
        await session.commit()
    found = await reads.timeline(db, 1)
    assert [(t.moment, t.actor, t.what) for t in found] == [
        (reads.Moment.event, "edr", "alert 1"),
        (reads.Moment.action, "UANN", "action.succeeded lock:bob: locked bob"),
        (reads.Moment.click, "UEVE", "refused lock:bob"),
        (reads.Moment.fido, "fido", "incident.refreshed lock:bob → score 70, ask_approval"),
        (reads.Moment.event, "edr", "alert 2"),
    ]


async def test_waiting_for_each_approver(db: Database) -> None:
    proposals = [
        {"responder": "lock", "target": "alice"},
        {"responder": "wipe", "target": "pc-1", "two_person": True},
    ]
    await _incident(db, 1, decision="ask_approval", proposed_actions=proposals, score=80)
    await _incident(db, 2, decision="notify", proposed_actions=proposals, score=90)
    ran = [{**proposals[0], "automatic": True}, proposals[1]]  # the lock ran by itself
    await _incident(db, 3, decision="auto_act", proposed_actions=ran, score=70)
    async with db.session() as session:
        session.add(
            Action(
                incident_id=1,
                responder="wipe",
                target="pc-1",
                requested_by="UANN",
                status="awaiting_2nd",
                approvals=["UANN"],
                idempotency_key="w1",
            )
        )
        await session.commit()
    policy = Policy(
        actions=[
            ActionPolicy(responder="lock"),
            ActionPolicy(responder="wipe", approvers=["UWIPER"], approver_group="S0SEC"),
        ]
    )

    async def waiting(actor: str, people: Groups | None = None) -> list[tuple[int, list[str]]]:
        service = IncidentService(db=db, policy=policy, approvers=["UANN"], people=people)
        return [
            (w.incident.id or 0, [f"{p.responder}:{p.target}" for p in w.proposals])
            for w in await reads.waiting_for(service, actor)
        ]

    # UANN approved the wipe once: a second approver must be someone else
    assert await waiting("UANN") == [(1, ["lock:alice"]), (3, ["wipe:pc-1"])]
    assert await waiting("UWIPER") == [(1, ["wipe:pc-1"]), (3, ["wipe:pc-1"])]
    assert await waiting("UCAROL", Groups({"S0SEC": {"UCAROL"}})) == [
        (1, ["wipe:pc-1"]),
        (3, ["wipe:pc-1"]),
    ]
    assert await waiting("UCAROL", Groups({}, down=True)) == []  # cannot tell: not shown
    assert await waiting("UNOBODY") == []


async def test_health_of_every_part(db: Database) -> None:
    clock = Clock(NOW)
    rules = lookup_policy(
        breaker_failures=1,
        cooldown=60,
        sources={
            "mailbox": SourcePolicy(type="imap", detector="generic"),
            "edr_api": SourcePolicy(type="crowdstrike_api", detector="crowdstrike"),
            "old": SourcePolicy(type="sql", detector="generic", enabled=False),
        },
    )
    reputation = wrap(ReputationLookup(), db, clock, Sleeps(), rules)
    inventory = wrap(ReputationLookup(name="test_inv", provider="test_inv"), db, clock, Sleeps())
    directory = DirectoryEnricher({})
    flaky = DirectoryEnricher({})
    flaky.name = "flaky"
    reputation.breaker.failure()  # one failure opens it (breaker_failures=1)
    async with db.session() as session:
        session.add(
            DeferredLookup(key="k", enricher="test_inv", kind="ip", value="1.2.3.4", not_before=NOW)
        )
        session.add(SourceCursor(name="mailbox", last_error="IMAP: login failed"))
        session.add(SourceCursor(name="edr_api"))
        session.add(Control(key="cap:wipe", set_by="fido"))
        session.add(
            Incident(
                id=1,
                title="t",
                updated_at=datetime.now(UTC),
                enrichment=dump_enrichment(
                    {
                        "flaky": EnrichmentResult(status=EnrichmentStatus.timeout),
                        "test_directory": EnrichmentResult(),
                    }
                ),
            )
        )
        await session.flush()
        for n, status in ((1, "succeeded"), (2, "failed"), (3, "denied")):
            session.add(
                Action(
                    incident_id=1,
                    responder="lock",
                    target=f"u{n}",
                    requested_by="fido",
                    status=status,
                    result=f"result {n}",
                    idempotency_key=f"a{n}",
                )
            )
        await session.commit()
    health = await reads.health(
        db=db,
        policy=rules,
        enrichers=[reputation, inventory, directory, flaky],
        responders={"lock": LockResponder(), "wipe": LockResponder(), "quiet": LockResponder()},
        now=datetime.now(UTC),
    )
    states = {(p.kind, p.name): (p.state, p.detail) for p in health.parts}
    assert states == {
        ("enricher", "test_reputation"): (
            reads.State.breaker_open,
            "calls stopped until 12:01:00 UTC",
        ),
        ("enricher", "test_inv"): (reads.State.waiting, "1 lookups waiting"),
        ("enricher", "test_directory"): (reads.State.ok, ""),
        ("enricher", "flaky"): (reads.State.degraded, "timeout"),
        ("source", "edr_api"): (reads.State.ok, ""),
        ("source", "mailbox"): (reads.State.degraded, "IMAP: login failed"),
        ("responder", "lock"): (reads.State.degraded, "result 2"),  # the denial is no failure
        ("responder", "quiet"): (reads.State.ok, ""),
        ("responder", "wipe"): (reads.State.capped, "asks before every action"),
    }
    assert health.ok is False and health.failed_outbox == 0 and health.dead_letters == 0
    clock.advance(61)  # the cool-down is over: half-open, a trial call may go
    later = await reads.health(
        db=db, policy=rules, enrichers=[reputation], responders={}, now=datetime.now(UTC)
    )
    assert [p.state for p in later.parts if p.kind == "enricher"] == [reads.State.ok]


async def _acted_and_approved(db: Database, now: datetime) -> None:
    """Incident 1: Fido locked bob by itself (contained in 2 min), closed as a true positive
    12 min in; incident 2: UBOB approved a lock 6 min in (acknowledged, approved and
    contained then). Mean times: acknowledge 9m, approve 6m, contain 4m."""
    minute = timedelta(minutes=1)
    await _incident(
        db,
        1,
        created_at=now - 60 * minute,
        decision="auto_act",
        status="closed",
        verdict="true_positive",
    )
    await _incident(db, 2, created_at=now - 30 * minute, decision="ask_approval", score=80)
    async with db.session() as session:
        for number, by, approvals, at in (
            (1, "fido", [], now - 58 * minute),
            (2, "UBOB", ["UBOB"], now - 24 * minute),
        ):
            session.add(
                Action(
                    incident_id=number,
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
        for actor, verb, number, at in (
            ("fido", "action.succeeded", 1, now - 58 * minute),
            ("UANN", "incident.closed", 1, now - 48 * minute),
            ("UBOB", "action.succeeded", 2, now - 24 * minute),
        ):
            entry = audit.record(
                session, actor=actor, verb=verb, target="lock:x", incident_id=number
            )
            entry.at = at
        await session.commit()


MEAN_TIMES = "*Mean time* to acknowledge 9m · to approve 6m · to contain 4m"
PRECISION = (
    "*Auto-action precision:* *100%* true positives (1 of 1 closed with a verdict; "
    "1 acted on by itself)"
)


async def test_stats_text_shows_every_mean_time_and_the_precision(db: Database) -> None:
    from bot.slack.detail_blocks import stats_text

    await _acted_and_approved(db, NOW)
    lines = stats_text(await stats.stats(db, now=NOW)).splitlines()
    assert lines[-2:] == [MEAN_TIMES, PRECISION]
    assert "*Incidents:* 2 · 1 still open" in lines
    assert "  by verdict: true positive 1" in lines
    assert "  `lock`: succeeded 2" in lines


def test_stats_text_of_precision_short_of_all_and_of_nothing_measured() -> None:
    from bot.slack.detail_blocks import stats_text

    found = stats.Stats(
        since=NOW - timedelta(days=7),
        until=NOW,
        to_acknowledge=timedelta(hours=1, minutes=12, seconds=30),
        to_approve=timedelta(seconds=42),
        to_contain=timedelta(days=2, hours=3),
        precision=stats.Precision(true_positives=2, judged=3, acted=5),
    )
    lines = stats_text(found).splitlines()
    assert lines[-2:] == [
        "*Mean time* to acknowledge 1h 12m · to approve 42s · to contain 2d 3h",
        "*Auto-action precision:* *67%* true positives (2 of 3 closed with a verdict; "
        "5 acted on by itself)",
    ]
    empty = stats_text(stats.Stats(since=NOW - timedelta(days=7), until=NOW)).splitlines()
    assert empty[-2:] == [
        "*Mean time* to acknowledge – · to approve – · to contain –",
        "*Auto-action precision:* no verdicts yet on the 0 incidents Fido acted on by itself",
    ]


# -- the command line -------------------------------------------------------------------


async def _cli_store(url: str) -> None:
    db = database.Database(url)
    await _incident(db, 1, score=30, title="Low <thing>")
    await _incident(db, 2, score=80, decision="ask_approval", title="Big thing")
    async with db.session() as session:
        audit.record(session, actor="UANN", verb="incident.closed", target="x", incident_id=1)
        await session.commit()
    await db.dispose()


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    database.upgrade(url)
    asyncio.run(_cli_store(url))
    monkeypatch.setenv("FIDO_DATABASE_URL", url)
    return url


def test_fido_incidents(stored: str) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["incidents"])
    assert listed.exit_code == 0, listed.output
    assert "Open incidents, highest score first" in listed.output
    assert listed.output.index("*#2* Big thing") < listed.output.index("*#1* Low <thing>")
    mine = runner.invoke(app, ["incidents", "mine", "--user", "UANN", "--json"])
    assert mine.exit_code == 0, mine.output
    assert [i["id"] for i in json.loads(mine.output)] == [1]
    refused = runner.invoke(app, ["incidents", "mine"])
    assert refused.exit_code == 1 and "mine needs --user" in refused.output
    assert runner.invoke(app, ["incidents", "closed"]).exit_code == 2  # not a choice


def test_fido_stats(stored: str) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["stats", "--since", "400d"])
    assert shown.exit_code == 1 and "at most a year" in shown.output
    shown = runner.invoke(app, ["stats", "--since", "forever"])
    assert shown.exit_code == 1 and "is not a duration" in shown.output
    shown = runner.invoke(app, ["stats", "--since", "366d", "--json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["incidents"] == 2 and report["by_decision"] == {"none": 1, "ask_approval": 1}
    assert report["precision"] == {"true_positives": 0, "judged": 0, "acted": 0, "value": None}
    text = runner.invoke(app, ["stats"])
    assert text.exit_code == 0 and "Fido over the last 7 days" in text.output
    assert "*Auto-action precision:* no verdicts yet" in text.output


def test_fido_stats_shows_mean_times_and_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'fido.db'}"
    database.upgrade(url)

    async def store() -> None:
        db = database.Database(url)
        await _acted_and_approved(db, datetime.now(UTC))
        await db.dispose()

    asyncio.run(store())
    monkeypatch.setenv("FIDO_DATABASE_URL", url)
    shown = CliRunner().invoke(app, ["stats"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert MEAN_TIMES in lines and PRECISION in lines
    report = json.loads(CliRunner().invoke(app, ["stats", "--json"]).output)
    assert (report["to_acknowledge"], report["to_approve"], report["to_contain"]) == (
        540.0,
        360.0,
        240.0,
    )
    assert report["precision"] == {"true_positives": 1, "judged": 1, "acted": 1, "value": 1.0}


# -- the blocks stay within Slack's limits ------------------------------------------------


def test_a_long_timeline_and_a_full_home_stay_within_slack_limits() -> None:
    from bot.slack.detail_blocks import incident_detail, timeline_blocks
    from bot.slack.home import home_view
    from pipeline.controls import Switches
    from pipeline.records import Proposal

    entries = [
        reads.TimelineEntry(
            at=NOW + timedelta(seconds=n),
            moment=reads.Moment.event if n % 2 else reads.Moment.click,
            actor="edr" if n % 2 else "UANN",
            what=f"<!channel> alert {n} " + "x" * 300,
            severity="high",
        )
        for n in range(500)
    ]
    sections = [b.to_dict() for b in timeline_blocks(entries)]
    assert len(sections) == 2
    assert all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert sections[0]["text"]["text"].startswith("*Timeline* · 250 events, 250 actions")
    assert "the first 460 not shown" in sections[0]["text"]["text"]
    assert "<!channel>" not in json.dumps(sections)
    proposals = [{"responder": "lock", "target": f"u{n}"} for n in range(30)]
    incident = Incident(
        id=1, title="t", decision="ask_approval", proposed_actions=proposals, score=90
    )
    actions = [
        Action(
            id=n,
            incident_id=1,
            responder="lock",
            target=f"v{n}",
            requested_by="fido",
            status="succeeded",
            undo_data={"x": 1},
            idempotency_key=str(n),
        )
        for n in range(1, 40)
    ]
    detail = [b.to_dict() for b in incident_detail(
        incident, actions, entries, labels={}, reversible={"lock"}, suppression_days=30,
        suppression=None,
    )]  # fmt: skip
    assert len(detail) <= 50 and detail[-1]["type"] == "actions"  # the close buttons kept
    waiting = [
        reads.Waiting(incident, [], [Proposal(responder="lock", target=f"u{n}") for n in range(9)])
        for _ in range(20)
    ]
    health = reads.Health(
        parts=[reads.Part("enricher", f"e{n}", reads.State.degraded, "y" * 500) for n in range(40)],
        switches=Switches(),
        dead_letters=0,
        failed_outbox=0,
        pending_events=0,
    )
    view = home_view(
        waiting=waiting,
        incidents=[incident] * 40,
        actions=actions,
        health=health,
        reversible={"lock"},
        can_undo=lambda action: True,
    )
    assert len(view["blocks"]) <= 100
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in view["blocks"])
    assert sum(b["type"] == "actions" for b in view["blocks"]) == 5 * 3 + 10  # approvals, undo


def test_the_tab_offers_undo_only_for_a_reversible_responder() -> None:
    from bot.slack.home import home_view
    from pipeline.controls import Switches

    ended = Action(
        id=1,
        incident_id=1,
        responder="end_sessions",
        target="alice",
        requested_by="UANN",
        status="succeeded",
        undo_data={"sessions": 2},  # left by the responder, yet nothing brings them back
        idempotency_key="k",
    )
    health = reads.Health(
        parts=[], switches=Switches(), dead_letters=0, failed_outbox=0, pending_events=0
    )

    def view(reversible: set[str]) -> str:
        drawn = home_view(
            waiting=[],
            incidents=[],
            actions=[ended],
            health=health,
            reversible=reversible,
            can_undo=lambda action: True,
        )
        return json.dumps(drawn)

    assert "fido_undo" not in view(set())
    assert "fido_undo" in view({"end_sessions"})
