"""The pipeline worker: claims events and runs enrich → correlate → score → decide → act.

One bad event never stops the others: its error is logged and kept on the row, it is
retried a few times, then left ``failed`` for an engineer to look at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta

from pipeline import act, audit, queue
from pipeline.correlate import correlate
from pipeline.db import Database
from pipeline.decide import decide
from pipeline.enrich import enrich, is_degraded, merge
from pipeline.errors import FidoError
from pipeline.lookup_store import attach_waiters
from pipeline.lookups import LookupEnricher
from pipeline.models import Action, Decision, Event, Incident, utcnow
from pipeline.notify import Notifier, NullNotifier
from pipeline.observables import Observables
from pipeline.plugins import Enricher, Responder
from pipeline.policy import Policy
from pipeline.score import score

log = logging.getLogger(__name__)

# How far a decision goes; a refresh never moves an incident down this scale.
_RANK = {Decision.record: 0, Decision.notify: 1, Decision.ask_approval: 2, Decision.auto_act: 3}


class Pipeline:
    """Everything the stages need, wired once at start-up."""

    def __init__(
        self,
        *,
        db: Database,
        policy: Policy,
        enrichers: Sequence[Enricher] = (),
        responders: Mapping[str, Responder] | None = None,
        notifier: Notifier | None = None,
        approvers: Collection[str] = (),
    ) -> None:
        self.db = db
        self.policy = policy
        self.enrichers = list(enrichers)
        self.responders = dict(responders or {})
        self.notifier: Notifier = notifier or NullNotifier()
        self.approvers = frozenset(approvers) | frozenset(policy.approvers)
        self.wakeup = asyncio.Event()

    # -- the queue -------------------------------------------------------------------------

    async def run_once(self) -> bool:
        """Process one claimable event; False when the queue is empty."""
        event = await queue.claim(self.db)
        if event is None:
            return False
        assert event.id is not None
        try:
            incident = await self.process(event)
        except Exception as exc:  # isolate the failure to this event, keep it
            if not isinstance(exc, FidoError):
                log.exception("event %s failed", event.id)
            status = await queue.fail(self.db, event_id=event.id, error=f"{exc}")
            log.warning("event %s failed (%s): %s", event.id, status, exc)
        else:
            assert incident.id is not None
            await queue.complete(self.db, event_id=event.id, incident_id=incident.id)
        return True

    async def drain(self) -> int:
        """Process until the queue is empty; return how many events were handled."""
        handled = 0
        while await self.run_once():
            handled += 1
        return handled

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Work until ``stop`` is set; sleep ``idle`` seconds (or until woken) when empty."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # e.g. the database is briefly unreachable
                log.exception("worker loop error; retrying")
                busy = False
            if not busy:
                self.wakeup.clear()
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self.wakeup.wait()),
                ]
                await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()

    # -- the stages ------------------------------------------------------------------------

    async def process(self, event: Event) -> Incident:
        observables = Observables.model_validate(event.observables)
        results = await enrich(
            self.enrichers, observables, timeout=self.policy.enrichment_timeout_seconds
        )
        window = timedelta(minutes=self.policy.correlation_window_minutes)
        async with self.db.session() as session:
            incident = await correlate(session=session, event=event, window=window)
            incident.enrichment = merge(incident.enrichment, results)
            incident.degraded = is_degraded(results)
            assert incident.id is not None
            await attach_waiters(  # answers left pending come back through refresh()
                session,
                sqlite=self.db.sqlite,
                incident_id=incident.id,
                results=results,
                lookups=[e.name for e in self.enrichers if isinstance(e, LookupEnricher)],
            )
            incident.score, incident.score_breakdown = score(incident, self.policy)
            auto_count = await self._auto_actions_last_hour()
            verdict = decide(
                incident, self.policy, self.responders, auto_actions_last_hour=auto_count
            )
            incident.decision = verdict.decision.value
            incident.decision_reason = verdict.reason
            incident.proposed_actions = verdict.proposed
            session.add(incident)
            audit.record(
                session,
                actor=act.SYSTEM_ACTOR,
                verb="incident.scored",
                target=event.detector,
                incident_id=incident.id,
                event_id=event.id,
                score=incident.score,
                decision=incident.decision,
                degraded=incident.degraded,
            )
            await session.commit()
        log.info(
            "event %s → incident %s: score %s, %s",
            event.id,
            incident.id,
            incident.score,
            incident.decision,
        )
        incident_id = incident.id
        assert incident_id is not None
        if verdict.decision is Decision.auto_act:
            for proposal in verdict.proposed:
                await act.execute(
                    db=self.db,
                    policy=self.policy,
                    responders=self.responders,
                    incident_id=incident_id,
                    requested_by=act.SYSTEM_ACTOR,
                    approved_by=None,
                    responder=proposal["responder"],
                    target=proposal["target"],
                )
        if verdict.decision is not Decision.record:
            await self.publish(incident)
        return incident

    async def refresh(self, incident_id: int) -> Incident | None:
        """Re-score and re-decide an incident whose facts changed (a deferred lookup came
        back), then act and re-publish its card.

        Never a step down: the decision only moves up (record → notify → ask approval →
        act), and proposals are only added, so an Approve button already shown and any
        action already taken stay valid. Moving up to auto-act runs the new proposals; a
        record that now reaches notify is posted for the first time."""
        async with self.db.session() as session:
            incident = await session.get(Incident, incident_id)
            if incident is None:
                return None
            before = Decision(incident.decision) if incident.decision else None
            incident.score, incident.score_breakdown = score(incident, self.policy)
            auto_count = await self._auto_actions_last_hour()
            verdict = decide(
                incident, self.policy, self.responders, auto_actions_last_hour=auto_count
            )
            raised = before is None or _RANK[verdict.decision] > _RANK[before]
            if raised:
                incident.decision = verdict.decision.value
                incident.decision_reason = verdict.reason
            proposed = list(incident.proposed_actions)
            proposed += [p for p in verdict.proposed if p not in proposed]
            incident.proposed_actions = proposed
            incident.updated_at = utcnow()
            session.add(incident)
            audit.record(
                session,
                actor=act.SYSTEM_ACTOR,
                verb="incident.refreshed",
                target="enrichment",
                incident_id=incident_id,
                score=incident.score,
                decision=incident.decision,
                raised=raised,
            )
            await session.commit()
        if raised and verdict.decision is Decision.auto_act:
            for proposal in verdict.proposed:
                await act.execute(
                    db=self.db,
                    policy=self.policy,
                    responders=self.responders,
                    incident_id=incident_id,
                    requested_by=act.SYSTEM_ACTOR,
                    approved_by=None,
                    responder=proposal["responder"],
                    target=proposal["target"],
                )
        if incident.decision != Decision.record.value or incident.slack_ts:
            await self.publish(incident)
        return incident

    async def _auto_actions_last_hour(self) -> int:
        """The blast-radius count, read only when automatic action is enabled at all."""
        if self.policy.thresholds.auto_act is None:
            return 0
        return await act.auto_actions_since(self.db)

    async def publish(self, incident: Incident) -> None:
        """Post or update the incident's card; a notifier failure is logged, not fatal."""
        assert incident.id is not None
        actions = await act.actions_for(self.db, incident_id=incident.id)
        try:
            ref = await self.notifier.publish(incident, actions)
        except Exception:
            log.exception("could not publish incident %s", incident.id)
            return
        if ref is not None and (ref.channel, ref.ts) != (incident.slack_channel, incident.slack_ts):
            async with self.db.session() as session:
                fresh = await session.get(Incident, incident.id)
                if fresh is not None:
                    fresh.slack_channel, fresh.slack_ts = ref.channel, ref.ts
                    session.add(fresh)
                    await session.commit()
            incident.slack_channel, incident.slack_ts = ref.channel, ref.ts

    async def incident(self, incident_id: int) -> tuple[Incident, list[Action]] | None:
        async with self.db.session() as session:
            incident = await session.get(Incident, incident_id)
        if incident is None:
            return None
        return incident, await act.actions_for(self.db, incident_id=incident_id)

    # -- what people do ---------------------------------------------------------------------

    async def approve(self, *, incident_id: int, responder: str, target: str, actor: str) -> Action:
        await act.authorize(
            self.db, actor=actor, approvers=self.approvers, verb="approve", incident_id=incident_id
        )
        action = await act.execute(
            db=self.db,
            policy=self.policy,
            responders=self.responders,
            incident_id=incident_id,
            responder=responder,
            target=target,
            requested_by=actor,
            approved_by=actor,
        )
        await self._republish(incident_id)
        return action

    async def deny(self, *, incident_id: int, responder: str, target: str, actor: str) -> Action:
        await act.authorize(
            self.db, actor=actor, approvers=self.approvers, verb="deny", incident_id=incident_id
        )
        action = await act.deny(
            db=self.db, incident_id=incident_id, responder=responder, target=target, actor=actor
        )
        await self._republish(incident_id)
        return action

    async def undo(self, *, incident_id: int, action_id: int, actor: str) -> Action:
        await act.authorize(
            self.db, actor=actor, approvers=self.approvers, verb="undo", incident_id=incident_id
        )
        try:
            return await act.undo(
                db=self.db, responders=self.responders, action_id=action_id, actor=actor
            )
        finally:
            await self._republish(incident_id)

    async def _republish(self, incident_id: int) -> None:
        found = await self.incident(incident_id)
        if found is not None:
            await self.publish(found[0])
