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

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
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


_KEY: Table = IncidentKey.__table__  # type: ignore[attr-defined]
_INCIDENT: Table = Incident.__table__  # type: ignore[attr-defined]
_EVENT: Table = Event.__table__  # type: ignore[attr-defined]

# Built once (a statement is costly to build); every value is a parameter. Plain statements
# on the session's connection: what they read (keys, closed incidents, events) is written
# at once by triage, so nothing pending in the session needs flushing first.
_SIGHTINGS = (
    select(_KEY.c.key, func.count(_KEY.c.incident_id))
    .join(_INCIDENT, _INCIDENT.c.id == _KEY.c.incident_id)
    .where(
        _KEY.c.key.in_(bindparam("keys", expanding=True)),
        _KEY.c.incident_id != bindparam("incident_id"),
        _INCIDENT.c.created_at >= bindparam("since"),
        _INCIDENT.c.verdict.is_(None) | _INCIDENT.c.verdict.not_in(_NOT_REAL),
    )
    .group_by(_KEY.c.key)
)
_USER_VERDICTS = (
    select(_KEY.c.key, _INCIDENT.c.verdict, func.count(_INCIDENT.c.id))
    .join(_INCIDENT, _INCIDENT.c.id == _KEY.c.incident_id)
    .where(
        _KEY.c.key.in_(bindparam("keys", expanding=True)),
        _KEY.c.incident_id != bindparam("incident_id"),
        _INCIDENT.c.status == IncidentStatus.closed.value,
        _INCIDENT.c.verdict.is_not(None),
        _INCIDENT.c.closed_at >= bindparam("since"),
    )
    .group_by(_KEY.c.key, _INCIDENT.c.verdict)
)
# the events of the incidents sharing a key (ix_event_incident_detector_received), not a
# join the planner may start from every event of the detector
_REPEATS = select(func.min(_EVENT.c.received_at), func.max(_EVENT.c.received_at)).where(
    _EVENT.c.incident_id.in_(
        select(_KEY.c.incident_id).where(_KEY.c.key.in_(bindparam("keys", expanding=True)))
    ),
    _EVENT.c.detector == bindparam("detector"),
    _EVENT.c.title == bindparam("title"),
    _EVENT.c.id != bindparam("event_id"),
    _EVENT.c.received_at >= bindparam("after"),
    _EVENT.c.received_at <= bindparam("at"),
)


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
    connection = await session.connection()
    if indicators:
        rows = await connection.execute(
            _SIGHTINGS, {"keys": indicators, "incident_id": incident.id, "since": since}
        )
        history.sightings = {key: int(n) for key, n in rows.all() if n}
    if users:
        rows = await connection.execute(
            _USER_VERDICTS, {"keys": users, "incident_id": incident.id, "since": since}
        )
        for key, verdict, n in rows.all():
            account = key.partition(":")[2]
            history.user_verdicts.setdefault(account, {})[str(verdict)] = int(n)
    if event is None:
        before = history_of(incident.history)
        history.repeat_hours, history.quiet_repeat = before.repeat_hours, before.quiet_repeat
    else:
        await _repeats(connection, history, event=event, keys=keys, policy=policy)
    return history


async def _repeats(
    connection: AsyncConnection, history: History, *, event: Event, keys: Keys, policy: Policy
) -> None:
    subjects = sorted(keys.all(Observables.model_validate(event.observables)))
    if not subjects:
        return
    at = as_utc(event.received_at)
    first, last = (
        await connection.execute(
            _REPEATS,
            {
                "keys": subjects,
                "detector": event.detector,
                "title": event.title,
                "event_id": event.id,
                "after": at - REPEAT_LOOKBACK,
                "at": at,
            },
        )
    ).one()
    if first is None or last is None:
        return
    history.repeat_hours = round((at - as_utc(first)).total_seconds() / 3600, 2)
    quiet = timedelta(minutes=policy.scoring.correlation.quiet_repeat_minutes)
    history.quiet_repeat = at - as_utc(last) <= quiet
