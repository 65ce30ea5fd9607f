"""What Fido's own records say about an incident's subjects, gathered for the score.

Four indexed queries, all through ``incident_key``:

- **sightings** — per indicator (hash, external IP, domain, URL), how many earlier incidents
  within ``correlation.history_days`` carried it, not counting those closed as false
  positive or benign;
- **user verdicts** — per account, earlier closed incidents by verdict;
- **repeats** — the same alert (detector and title) about the same subjects within the
  last day: how many hours it has kept recurring, and whether it was last seen within
  ``scoring.correlation.quiet_repeat_minutes`` (then the card is updated without paging).

The result is kept on the incident (``Incident.history``), so a backtest re-scores exactly
what was scored.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline.clock import as_utc
from pipeline.correlate import Keys
from pipeline.models import CloseVerdict, Event, Incident, IncidentKey, IncidentStatus
from pipeline.observables import Observables
from pipeline.policy import Policy
from pipeline.records import History, history_of

INDICATORS = ("hash:", "ip:", "domain:", "url:")
REPEAT_LOOKBACK = timedelta(hours=24)
_NOT_REAL = (CloseVerdict.false_positive.value, CloseVerdict.benign.value)


async def gather(
    session: AsyncSession,
    *,
    incident: Incident,
    event: Event | None,
    policy: Policy,
    now: datetime,
    keys: Keys,
) -> History:
    """The incident's history now; without a new ``event`` the repeat figures are kept."""
    assert incident.id is not None
    mine = keys.all(Observables.model_validate(incident.observables))
    indicators = sorted(k for k in mine if k.startswith(INDICATORS))
    users = sorted(k for k in mine if k.startswith("user:"))
    since = now - timedelta(days=policy.correlation.history_days)
    history = History(detectors=list(incident.detectors))
    if indicators:
        rows = await session.exec(
            select(IncidentKey.key, func.count(col(IncidentKey.incident_id)))
            .join(Incident, col(Incident.id) == col(IncidentKey.incident_id))
            .where(
                col(IncidentKey.key).in_(indicators),
                col(IncidentKey.incident_id) != incident.id,
                col(Incident.created_at) >= since,
                (col(Incident.verdict).is_(None)) | (col(Incident.verdict).not_in(_NOT_REAL)),
            )
            .group_by(col(IncidentKey.key))
        )
        history.sightings = {key: int(n) for key, n in rows.all() if n}
    if users:
        rows2 = await session.exec(
            select(IncidentKey.key, Incident.verdict, func.count(col(Incident.id)))
            .join(Incident, col(Incident.id) == col(IncidentKey.incident_id))
            .where(
                col(IncidentKey.key).in_(users),
                col(IncidentKey.incident_id) != incident.id,
                Incident.status == IncidentStatus.closed.value,
                col(Incident.verdict).is_not(None),
                col(Incident.closed_at) >= since,
            )
            .group_by(col(IncidentKey.key), col(Incident.verdict))
        )
        for key, verdict, n in rows2.all():
            account = key.partition(":")[2]
            history.user_verdicts.setdefault(account, {})[str(verdict)] = int(n)
    if event is None:
        before = history_of(incident.history)
        history.repeat_hours, history.quiet_repeat = before.repeat_hours, before.quiet_repeat
    else:
        await _repeats(session, history, event=event, keys=keys, policy=policy)
    return history


async def _repeats(
    session: AsyncSession, history: History, *, event: Event, keys: Keys, policy: Policy
) -> None:
    subjects = sorted(keys.all(Observables.model_validate(event.observables)))
    if not subjects:
        return
    at = as_utc(event.received_at)
    # the events of the incidents sharing a key (ix_event_incident_detector_received), not
    # a join the planner may start from every event of the detector
    sharing = select(IncidentKey.incident_id).where(col(IncidentKey.key).in_(subjects))
    first, last = (
        await session.exec(
            select(func.min(col(Event.received_at)), func.max(col(Event.received_at))).where(
                col(Event.incident_id).in_(sharing),
                Event.detector == event.detector,
                Event.title == event.title,
                col(Event.id) != event.id,
                col(Event.received_at) >= at - REPEAT_LOOKBACK,
                col(Event.received_at) <= at,
            )
        )
    ).one()
    if first is None or last is None:
        return
    history.repeat_hours = round((at - as_utc(first)).total_seconds() / 3600, 2)
    quiet = timedelta(minutes=policy.scoring.correlation.quiet_repeat_minutes)
    history.quiet_repeat = at - as_utc(last) <= quiet
