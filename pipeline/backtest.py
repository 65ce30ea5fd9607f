"""Backtest: how another policy would have scored and decided the incidents Fido stored.

Each stored incident (created since ``since``) is scored again under the new policy from
what was stored on it — its observables, enrichment, detectors, event count and the
:class:`~pipeline.records.History` gathered when it was triaged — and decided again, then
compared with the score and decision stored. Nothing is written, nothing is looked up, no
responder is built: ``decide`` only needs each responder's ``target_kind``, so the caller
passes the registry's classes (the pipeline does not import integrations).

What is not replayed:

- **the hourly cap** on automatic actions (``max_auto_actions_per_hour``): every incident is
  decided as if no automatic action had run in the hour before it, so ``newly_auto`` is an
  upper bound when many incidents arrive together;
- **raising only**: triage never lowers an incident's decision, so the stored decision is
  the highest any of its triages reached; the backtest decides once, on the stored facts.

Degraded enrichment, dry-run, suppressions, protected and privileged accounts are honoured
as in :func:`~pipeline.decide.decide`.

Incidents are read in id order, ``batch`` at a time (keyset pagination on the id, one
session per batch, only the columns scoring and deciding read), so memory stays flat however
many incidents are stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlmodel import col

from pipeline.db import Database
from pipeline.decide import Targets, decide
from pipeline.models import Decision, Incident
from pipeline.policy import Policy
from pipeline.records import history_of
from pipeline.score import score


class ScoreBand(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


# The lowest score of each band, highest band first: low < 25 ≤ medium < 50 ≤ high < 75 ≤
# critical. A score that moves within its band is not a change worth reporting.
BANDS: tuple[tuple[int, ScoreBand], ...] = (
    (75, ScoreBand.critical),
    (50, ScoreBand.high),
    (25, ScoreBand.medium),
    (0, ScoreBand.low),
)

NO_DECISION = "none"  # the transition matrix's name for an incident never decided


def band(value: int) -> ScoreBand:
    """The band a score falls in (see :data:`BANDS`)."""
    for floor, name in BANDS:
        if value >= floor:
            return name
    return ScoreBand.low


class Change(BaseModel):
    """An incident whose score band or decision would change: ``[old, new]`` each."""

    model_config = ConfigDict(frozen=True)

    incident: int
    score: tuple[int, int]
    decision: tuple[Decision | None, Decision]


class BacktestReport(BaseModel):
    """What the new policy would have done differently.

    ``transitions`` counts every incident by stored decision (``"none"`` when it has none)
    then new decision, unchanged ones included, so each row sums to the incidents that had
    that decision."""

    incidents: int = 0
    changed: list[Change] = Field(default_factory=list)
    band_changes: int = 0
    decision_changes: int = 0
    newly_auto: int = 0  # would have been acted on automatically, and were not
    no_longer_auto: int = 0  # were acted on automatically, and would not be
    transitions: dict[str, dict[str, int]] = Field(default_factory=dict)


@dataclass(slots=True)
class _Stored:
    """The columns of a stored incident that ``score`` and ``decide`` read, plus its stored
    decision.

    Passed to them in place of an :class:`Incident`: building an ``Incident`` per row goes
    through SQLAlchemy's instrumented attributes and calls every default factory through
    pydantic's signature inspection (about 1 ms a row), and reading its attributes is
    slower too; this record costs a microsecond. Both functions only read attributes; an
    attribute they start to read that is missing here fails every backtest test."""

    id: int
    score: int
    decision: str | None
    severity: str
    observables: dict[str, Any]
    enrichment: dict[str, Any]
    degraded: bool
    event_count: int
    detectors: list[str]
    history: dict[str, Any]
    suppressed_by: str | None
    user_answers: dict[str, Any] | None

    @property
    def proposed_actions(self) -> list[dict[str, Any]]:
        """None queued: what the stored decision queued automatically followed the old
        policy, and the new one decides afresh (``decide`` keeps queued proposals
        automatic, which a replay must not)."""
        return []

    def as_incident(self) -> Incident:
        return cast(Incident, self)


_FIELDS = tuple(f.name for f in fields(_Stored))
_COLUMNS = tuple(Incident.__table__.c[name] for name in _FIELDS)  # type: ignore[attr-defined]


async def count(*, db: Database, since: datetime | None) -> int:
    """How many incidents a backtest from ``since`` goes through (for a progress bar)."""
    query = select(func.count(col(Incident.id)))
    if since is not None:
        query = query.where(col(Incident.created_at) >= since)
    async with db.session() as session:
        connection = await session.connection()
        return int((await connection.execute(query)).scalar_one())


async def backtest(
    *,
    db: Database,
    policy: Policy,
    responders: Mapping[str, Targets],
    since: datetime | None,
    progress: Callable[[int], None] | None = None,
    batch: int = 2000,
) -> BacktestReport:
    """Re-score and re-decide every incident created since ``since`` (all when None) under
    ``policy``; ``progress`` is called after each batch with the number of incidents in it."""
    report = BacktestReport()
    transitions: Counter[tuple[str, str]] = Counter()
    last = 0
    while True:
        query = select(*_COLUMNS).where(col(Incident.id) > last)
        if since is not None:
            query = query.where(col(Incident.created_at) >= since)
        query = query.order_by(col(Incident.id)).limit(batch)
        async with db.session() as session:
            connection = await session.connection()
            rows = (await connection.execute(query)).all()
        if not rows:
            break
        for row in rows:
            _replay(row, policy, responders, report, transitions)
        last = rows[-1][0]
        if progress is not None:
            progress(len(rows))
    for (old, new), n in sorted(transitions.items()):
        report.transitions.setdefault(old, {})[new] = n
    return report


def _replay(
    row: Sequence[Any],
    policy: Policy,
    responders: Mapping[str, Targets],
    report: BacktestReport,
    transitions: Counter[tuple[str, str]],
) -> None:
    """Score and decide one stored incident again and add it to ``report``."""
    stored = _Stored(*row)
    # JSON columns an old row may hold as NULL
    stored.observables, stored.enrichment = stored.observables or {}, stored.enrichment or {}
    stored.detectors, stored.history = stored.detectors or [], stored.history or {}
    stored.user_answers = stored.user_answers or {}
    old_score = stored.score
    old = Decision(stored.decision) if stored.decision else None
    stored.score, _ = score(stored.as_incident(), policy, history_of(stored.history))
    new = decide(stored.as_incident(), policy, responders).decision
    report.incidents += 1
    transitions[(old.value if old else NO_DECISION, new.value)] += 1
    banded = band(old_score) is not band(stored.score)
    report.band_changes += banded
    report.decision_changes += new is not old
    report.newly_auto += new is Decision.auto_act and old is not Decision.auto_act
    report.no_longer_auto += old is Decision.auto_act and new is not Decision.auto_act
    if banded or new is not old:
        report.changed.append(
            Change(incident=stored.id, score=(old_score, stored.score), decision=(old, new))
        )
