"""Triage: correlate → score → decide, as one step in one transaction.

The same step runs for a new event (after enrichment) and again when a deferred lookup
answers (``refresh``): the incident's history is gathered (``pipeline/history.py``), it is
scored (``pipeline/score.py``) and decided (``pipeline/decide.py``), and its audit entry is
written — all committed together. What must happen next (actions to run, a card to post or
update) is returned as an :class:`Outcome` for the incident service to carry out.

A decision is never lowered: once Fido asked for approval, the Approve button stays valid
however the score moves; proposals are only added. A suppressed alert is attached to its
incident and counted, but changes no decision and posts nothing. A closed incident takes no
new events (correlation opens a new one) and is not refreshed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline import act, audit, controls, outbox, queue, routing, suppress
from pipeline.clock import Clock, as_utc, system_clock
from pipeline.correlate import Keys, correlate, lock_keys
from pipeline.db import Database
from pipeline.decide import RANK, Brakes, Targets, decide
from pipeline.enrich import enrich
from pipeline.history import gather
from pipeline.lookups.enricher import LookupEnricher
from pipeline.lookups.store import attach_waiters
from pipeline.models import Decision, Event, Incident, IncidentStatus
from pipeline.observables import Observables
from pipeline.plugins import Enricher
from pipeline.policy import Policy
from pipeline.records import (
    Enrichment,
    Proposal,
    dump_breakdown,
    dump_proposals,
    proposals_of,
)
from pipeline.score import score
from pipeline.suppress import ActiveSuppression

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one triage decided; what it must send is already in the outbox."""

    incident: Incident
    act: list[Proposal] = field(default_factory=list)  # automatic actions queued
    publish: bool = False  # a card post or update queued
    quiet: bool = False  # a repeat within the quiet window: update without paging
    decision_changed: bool = False  # the card must change at once (e.g. buttons appear)
    suppressed_by: str | None = None


CARD_UPDATE_DELAY = timedelta(seconds=3)  # routine card updates are sent in batches


async def _enqueue(
    session: AsyncSession,
    outcome: Outcome,
    now: datetime,
    *,
    first_cards: list[int] | None = None,
    joining: Sequence[int] = (),
) -> None:
    """What the outcome must send, as outbox rows in the triage's own transaction
    (``first_cards``: the incident was opened in this transaction, so it has no rows yet,
    and its first card joins that list, written by the caller with the others; ``joining``:
    the events that joined it in this transaction)."""
    incident_id = outcome.incident.id
    assert incident_id is not None
    for proposal in outcome.act:
        outbox.enqueue_act(session, incident_id, proposal)
    if outcome.publish and not outcome.act:  # an action queues its own card update
        routine = outcome.incident.message_ts is not None and not outcome.decision_changed
        if first_cards is not None:
            first_cards.append(incident_id)
        else:
            await outbox.enqueue_card(
                session, incident_id, not_before=now + CARD_UPDATE_DELAY if routine else None
            )
    if outcome.publish and outcome.incident.message_ts is not None:  # the thread hears it too
        await routing.enqueue_thread_update(
            session, outcome.incident, not_before=now + CARD_UPDATE_DELAY, joining=joining
        )


class Triage:
    def __init__(
        self,
        *,
        db: Database,
        policy: Policy,
        enrichers: Sequence[Enricher] = (),
        responders: Mapping[str, Targets] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.db = db
        self.enrichers = list(enrichers)
        self.responders = dict(responders or {})
        self.clock = clock
        self.use(policy)

    def use(self, policy: Policy) -> None:
        """Triage under ``policy`` from now on (a reload)."""
        self.policy = policy
        self.keys = Keys(policy)

    async def event(self, event: Event) -> Outcome:
        """Enrich a new event, then attach it to an incident and triage that incident."""
        return await self.attach(event, await self.enrich(event))

    async def enrich(self, event: Event) -> Enrichment:
        """The slow, concurrent part: every enricher on the event's observables."""
        observables = Observables.model_validate(event.observables)
        return await enrich(
            self.enrichers, observables, timeout=self.policy.enrichment_timeout_seconds
        )

    async def attach(self, event: Event, results: Enrichment) -> Outcome:
        """Correlate, score and decide, and complete the event — one transaction, so a crash
        leaves the event either untouched (claimed, to be resumed) or fully processed."""
        [outcome] = await self._attach_all([(event, results)])
        return outcome

    async def attach_many(
        self, items: Sequence[tuple[Event, Enrichment]]
    ) -> list[Outcome | Exception]:
        """``attach`` for several events (in the order given) in one transaction, each
        incident scored and decided once, after all of its events in the batch joined it.

        If the shared transaction fails, nothing of it is kept and each event is attached
        again on its own (read afresh from the database), so one bad event fails alone:
        its place in the result holds its exception.
        """
        if len(items) == 1:
            return list(await self._attach_all(items))
        try:
            return list(await self._attach_all(items))
        except Exception:
            log.info("a batch of %d events failed; attaching them one by one", len(items))
        results: list[Outcome | Exception] = []
        for event, enrichment in items:
            try:
                async with self.db.session(durable=False) as session:
                    fresh = await session.get(Event, event.id)
                if fresh is None:
                    raise LookupError(f"event {event.id} is gone")
                [outcome] = await self._attach_all([(fresh, enrichment)])
            except Exception as exc:
                results.append(exc)
            else:
                results.append(outcome)
        return results

    async def _attach_all(self, items: Sequence[tuple[Event, Enrichment]]) -> list[Outcome]:
        policy = self.policy
        async with self.db.session(durable=False) as session:
            now = as_utc(self.clock())
            await lock_keys(  # replicas attaching events about the same subject take turns
                session,
                (
                    key
                    for event, _ in items
                    for key in self.keys.joining(
                        self.keys.all(Observables.model_validate(event.observables))
                    )
                ),
            )
            # the suppressions in force, read once for the batch
            suppressions = await suppress.active(session, policy=policy, now=now, hits=False)
            joined: list[tuple[Event, Incident, ActiveSuppression | None]] = []
            assess: dict[int, Event] = {}  # incident → its last event that is triaged
            incidents: dict[int, Incident] = {}
            opened: set[int] = set()  # incidents this transaction opened
            for event, results in items:
                incident, hit = await self._join(
                    session, event, results, policy=policy, now=now, suppressions=suppressions
                )
                assert incident.id is not None
                if incident.event_count == 1:
                    opened.add(incident.id)
                joined.append((event, incident, hit))
                incidents[incident.id] = incident
                if hit is None or incident.event_count == 1:  # else it changes no decision
                    assess[incident.id] = event
            # every event of the batch done and joined in one statement, before history reads
            await queue.complete(session, [event for event, _, _ in joined])
            outcomes: dict[int, Outcome] = {}
            # one count for the whole batch: what one incident queues, the next one sees
            brakes = await self._brakes(session, policy) if assess else Brakes()
            for incident_id, incident in incidents.items():
                last = assess.get(incident_id)
                if last is None:  # only suppressed alerts joined it
                    outcomes[incident_id] = Outcome(incident=incident)
                    session.add(incident)
                else:
                    outcomes[incident_id], brakes = await self._assess(
                        session, incident, last, policy=policy, brakes=brakes
                    )
            for event, incident, hit in joined:
                audit.record(
                    session,
                    actor=act.SYSTEM_ACTOR,
                    verb="incident.suppressed" if hit else "incident.scored",
                    target=event.detector,
                    incident_id=incident.id,
                    event_id=event.id,
                    score=incident.score,
                    decision=incident.decision,
                    degraded=incident.degraded,
                    suppression=hit.key if hit else None,
                )
            first_cards: list[int] = []
            for incident_id, outcome in outcomes.items():
                await _enqueue(
                    session,
                    outcome,
                    now,
                    first_cards=first_cards if incident_id in opened else None,
                    joining=[e.id for e, i, _ in joined if i.id == incident_id and e.id],
                )
            await outbox.enqueue_first_cards(session, first_cards)
            await session.commit()
        for event, incident, hit in joined:
            log.info(
                "event %s → incident %s: score %s, %s%s",
                event.id,
                incident.id,
                incident.score,
                incident.decision,
                f" (suppressed by {hit.key})" if hit else "",
            )
        return [  # each event's own outcome: its incident's, with its own suppression
            replace(outcomes[incident.id], suppressed_by=hit.key if hit else None)
            for _, incident, hit in joined
            if incident.id is not None
        ]

    async def _join(
        self,
        session: AsyncSession,
        event: Event,
        results: Enrichment,
        *,
        policy: Policy,
        now: datetime,
        suppressions: Sequence[ActiveSuppression],
    ) -> tuple[Incident, ActiveSuppression | None]:
        """Attach ``event`` to its incident with its enrichment and match ``suppressions``
        (the caller completes the batch's events together)."""
        observables = Observables.model_validate(event.observables)
        incident = await correlate(
            session=session, event=event, policy=policy, now=now, keys=self.keys, results=results
        )
        assert incident.id is not None
        await attach_waiters(  # answers left pending come back through refresh()
            session,
            sqlite=self.db.sqlite,
            incident_id=incident.id,
            results=results,
            lookups=[e.name for e in self.enrichers if isinstance(e, LookupEnricher)],
        )
        hit = suppress.first_match(
            suppressions, detector=event.detector, title=event.title, observables=observables
        )
        if hit is not None:
            event.suppressed_by = hit.key
            await suppress.count_hit(session, sqlite=self.db.sqlite, key=hit.key, now=now)
            if incident.event_count == 1:  # it opened this incident
                incident.suppressed_by = hit.key
        else:  # an alert no suppression matches is triaged, even in a silenced incident
            incident.suppressed_by = None
        return incident, hit

    async def refresh(self, incident_id: int) -> Outcome | None:
        """Triage an incident again because its facts changed (a late lookup answer)."""
        async with self.db.session(durable=False) as session:
            incident = await session.get(Incident, incident_id)
            if incident is None or incident.status != IncidentStatus.open.value:
                return None
            brakes = await self._brakes(session, self.policy)
            outcome, _ = await self._assess(
                session, incident, None, policy=self.policy, brakes=brakes
            )
            audit.record(
                session,
                actor=act.SYSTEM_ACTOR,
                verb="incident.refreshed",
                target="enrichment",
                incident_id=incident_id,
                score=incident.score,
                decision=incident.decision,
            )
            await _enqueue(session, outcome, as_utc(self.clock()))
            await session.commit()
        return outcome

    async def _assess(
        self,
        session: AsyncSession,
        incident: Incident,
        event: Event | None,
        *,
        policy: Policy,
        brakes: Brakes,
    ) -> tuple[Outcome, Brakes]:
        """Score and decide ``incident`` in ``session`` (not committed) under ``brakes``;
        the brakes after it, counting what it queued and tripped."""
        now = as_utc(self.clock())
        history = await gather(
            session, incident=incident, event=event, policy=policy, now=now, keys=self.keys
        )
        incident.history = history.model_dump(mode="json")
        incident.score, lines = score(incident, policy, history)
        incident.score_breakdown = dump_breakdown(lines)
        verdict = decide(incident, policy, self.responders, brakes=brakes)
        for responder, count in verdict.trip.items():
            cap = policy.rule(responder).max_auto_per_hour or 0
            await controls.trip(session, responder=responder, cap=cap, count=count)
        before = Decision(incident.decision) if incident.decision else None
        if before is None or RANK[verdict.decision] >= RANK[before]:
            incident.decision = verdict.decision.value
            incident.decision_reason = verdict.reason
        proposed = proposals_of(incident.proposed_actions)
        had = list(proposed)
        for proposal in verdict.proposed:
            same = [i for i, p in enumerate(proposed) if p.same_action(proposal)]
            if not same:
                proposed.append(proposal)
            elif proposal.two_person and not proposed[same[0]].two_person:
                proposed[same[0]] = proposal  # only ever made stricter
        acting = verdict.decision is Decision.auto_act and incident.decision == Decision.auto_act
        queued: list[Proposal] = []  # newly automatic: an earlier triage queued the rest
        for proposal in verdict.automatic if acting else []:
            i = next(i for i, p in enumerate(proposed) if p.same_action(proposal))
            if not proposed[i].automatic and not proposed[i].two_person:
                proposed[i] = proposed[i].model_copy(update={"automatic": True})
                queued.append(proposed[i])
        incident.proposed_actions = dump_proposals(proposed)
        # a new decision or a new button is shown at once; the rest can wait a moment
        changed = before is None or incident.decision != before.value or proposed != had
        if changed:
            incident.decision_version += 1  # buttons drawn before this are stale
        session.add(incident)
        publish = await routing.place(session, incident, policy, now=now)
        outcome = Outcome(
            incident=incident,
            act=queued,
            publish=publish,
            quiet=history.quiet_repeat,
            decision_changed=changed,
        )
        return outcome, brakes.counting(queued, verdict.trip)

    async def _brakes(self, session: AsyncSession, policy: Policy) -> Brakes:
        """The pause, the tripped caps and the blast-radius counts (actions run, running
        and queued), read only when automatic action is enabled at all."""
        if policy.thresholds.auto_act is None:
            return Brakes()
        switches = await controls.read(session)
        total, by_responder = await act.automatic_counts(session, switches)
        return Brakes(auto_actions_last_hour=total, by_responder=by_responder, switches=switches)
