"""The engine: the worker, triage and the incident service, wired once at start-up.

It holds no logic of its own beyond handing each part to the next:

    worker ──claims an event──► triage.event ──Outcome──► incidents.follow_up
    deferred lookup answered ──► triage.refresh ──Outcome──► incidents.follow_up

and ``reload`` puts a new policy in force in every part at once (SIGHUP).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

from pipeline.clock import Clock, system_clock
from pipeline.db import Database
from pipeline.incidents import IncidentService
from pipeline.models import Event, Incident
from pipeline.notify import Notifier
from pipeline.plugins import Enricher, Responder
from pipeline.policy import Policy
from pipeline.triage import Triage
from pipeline.worker import Worker

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        *,
        db: Database,
        policy: Policy,
        enrichers: Sequence[Enricher] = (),
        responders: Mapping[str, Responder] | None = None,
        notifier: Notifier | None = None,
        approvers: Collection[str] = (),
        clock: Clock = system_clock,
    ) -> None:
        self.db = db
        self.policy = policy
        self.enrichers = list(enrichers)
        self.responders = dict(responders or {})
        self.triage = Triage(
            db=db, policy=policy, enrichers=enrichers, responders=self.responders, clock=clock
        )
        self.incidents = IncidentService(
            db=db,
            policy=policy,
            responders=self.responders,
            notifier=notifier,
            approvers=approvers,
            clock=clock,
        )
        self.worker = Worker(db=db, handle=self.handle)

    async def handle(self, event: Event) -> int:
        outcome = await self.triage.event(event)
        await self.incidents.follow_up(outcome)
        assert outcome.incident.id is not None
        return outcome.incident.id

    async def refresh(self, incident_id: int) -> Incident | None:
        outcome = await self.triage.refresh(incident_id)
        if outcome is None:
            return None
        await self.incidents.follow_up(outcome)
        return outcome.incident

    def reload(self, policy: Policy) -> None:
        """Put ``policy`` in force for everything decided from now on. Detectors, enrichers
        and sources are built at start-up: a change to them waits for a restart."""
        for part in ("detectors", "sources", "enrichers", "enricher_options", "lookups"):
            if getattr(policy, part) != getattr(self.policy, part):
                log.warning("policy reload: %s changed; that takes effect at restart", part)
        self.policy = policy
        self.triage.use(policy)
        self.incidents.use(policy)

    async def drain(self) -> int:
        return await self.worker.drain()
