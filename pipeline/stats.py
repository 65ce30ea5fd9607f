"""``/fido stats`` and ``fido stats``: what Fido did over a window (7 days by default).

- **alerts** received, by detector, and how many a suppression silenced;
- **incidents** created, by decision, and the closed ones by verdict;
- **actions** by responder and outcome (their status now);
- **mean times**, from an incident's creation: to *acknowledge* (the first thing a person
  did to it: a click, a close, a suppression), to *approve* (the first approval of one of
  its actions) and to *contain* (the first action that succeeded, automatic or approved);
- **auto-action precision**: of the incidents Fido acted on by itself and that were
  closed with a verdict, the share that were true positives (false positives and benign
  activity both count against it).

Counts come from the database, so every replica answers the same.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import fmean

from sqlalchemy import func
from sqlmodel import col, select

from pipeline import act
from pipeline.clock import as_utc
from pipeline.db import Database
from pipeline.incidents import EXPIRY_ACTOR
from pipeline.models import (
    Action,
    AuditEntry,
    CloseVerdict,
    Event,
    Incident,
    IncidentStatus,
)

DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=366)
APPROVALS = ("action.approved_once", "action.succeeded", "action.failed", "action.dry_run")
CONTAINED = "action.succeeded"


@dataclass(frozen=True)
class Precision:
    true_positives: int
    judged: int  # closed with a verdict
    acted: int  # incidents with an automatic action

    @property
    def value(self) -> float | None:
        return self.true_positives / self.judged if self.judged else None


@dataclass
class Stats:
    since: datetime
    until: datetime
    alerts: int = 0
    alerts_by_detector: dict[str, int] = field(default_factory=dict)
    suppressed_alerts: int = 0
    incidents: int = 0
    by_decision: dict[str, int] = field(default_factory=dict)
    by_verdict: dict[str, int] = field(default_factory=dict)
    open_incidents: int = 0
    actions: dict[str, dict[str, int]] = field(default_factory=dict)  # responder → status → n
    to_acknowledge: timedelta | None = None
    to_approve: timedelta | None = None
    to_contain: timedelta | None = None
    precision: Precision = field(default_factory=lambda: Precision(0, 0, 0))


def is_person(actor: str) -> bool:
    """A person's doing, not Fido's (triage, automatic action, expiry) nor an operator's."""
    return actor not in (act.SYSTEM_ACTOR, EXPIRY_ACTOR) and not actor.startswith("operator:")


def _mean(durations: list[timedelta]) -> timedelta | None:
    if not durations:
        return None
    return timedelta(seconds=fmean(d.total_seconds() for d in durations))


def _first(
    entries: list[AuditEntry], created: dict[int, datetime], keep: tuple[str, ...] | None
) -> list[timedelta]:
    """Per incident, the time from its creation to its first entry (of ``keep`` verbs)."""
    firsts: dict[int, datetime] = {}
    for entry in entries:
        if entry.incident_id is None or entry.incident_id not in created:
            continue
        if keep is not None and entry.verb not in keep:
            continue
        firsts.setdefault(entry.incident_id, as_utc(entry.at))
    return [max(at - created[i], timedelta(0)) for i, at in firsts.items()]


async def stats(db: Database, *, now: datetime, window: timedelta = DEFAULT_WINDOW) -> Stats:
    until = as_utc(now)
    since = until - min(window, MAX_WINDOW)
    result = Stats(since=since, until=until)
    async with db.session() as session:
        by_detector = await session.exec(
            select(Event.detector, func.count())
            .where(col(Event.received_at) >= since)
            .group_by(col(Event.detector))
        )
        result.alerts_by_detector = {d: int(n) for d, n in by_detector.all()}
        result.alerts = sum(result.alerts_by_detector.values())
        result.suppressed_alerts = int(
            (
                await session.exec(
                    select(func.count())
                    .select_from(Event)
                    .where(col(Event.received_at) >= since, col(Event.suppressed_by).is_not(None))
                )
            ).one()
        )
        incidents = (
            await session.exec(select(Incident).where(col(Incident.created_at) >= since))
        ).all()
        actions = (await session.exec(select(Action).where(col(Action.created_at) >= since))).all()
        entries = list(
            (
                await session.exec(
                    select(AuditEntry)
                    .where(col(AuditEntry.at) >= since, col(AuditEntry.incident_id).is_not(None))
                    .order_by(col(AuditEntry.id))
                )
            ).all()
        )
    created: dict[int, datetime] = {}
    decisions: dict[str, int] = defaultdict(int)
    verdicts: dict[str, int] = defaultdict(int)
    verdict_of: dict[int, str | None] = {}
    for incident in incidents:
        assert incident.id is not None
        created[incident.id] = as_utc(incident.created_at)
        decisions[incident.decision or "none"] += 1
        verdict_of[incident.id] = incident.verdict
        if incident.verdict:
            verdicts[incident.verdict] += 1
        if incident.status == IncidentStatus.open.value:
            result.open_incidents += 1
    result.incidents = len(incidents)
    result.by_decision, result.by_verdict = dict(decisions), dict(verdicts)

    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    automatic: set[int] = set()
    for action in actions:
        outcomes[action.responder][action.status] += 1
        automatic_run = action.requested_by == act.SYSTEM_ACTOR and not action.approvals
        if automatic_run and action.incident_id is not None and action.incident_id in created:
            automatic.add(action.incident_id)
    result.actions = {r: dict(by_status) for r, by_status in sorted(outcomes.items())}

    by_people = [e for e in entries if is_person(e.actor) and not e.verb.startswith("refused")]
    result.to_acknowledge = _mean(_first(by_people, created, None))
    result.to_approve = _mean(_first(by_people, created, APPROVALS))
    result.to_contain = _mean(_first(entries, created, (CONTAINED,)))

    judged = [verdict_of[i] for i in automatic if verdict_of.get(i)]
    result.precision = Precision(
        true_positives=sum(v == CloseVerdict.true_positive.value for v in judged),
        judged=len(judged),
        acted=len(automatic),
    )
    return result
