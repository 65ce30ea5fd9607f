"""The engine: the worker, triage, the incident service and the outbox sender, wired once
at start-up.

It holds no logic of its own beyond handing each part to the next:

    worker ──claims an event──► triage.event ─┐ one transaction: incident, audit,
    deferred lookup answered ──► triage.refresh┘ outbox rows, event completed
    outbox sender ──delivers rows──► incidents.deliver (card → Notifier, act → responder)

``run`` runs the worker and the sender side by side (a slow Slack never holds up triage);
``drain`` works the queue and then the outbox until both are empty; ``reload`` puts a new
policy in force in every part at once (SIGHUP).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence

from pipeline import routing
from pipeline.clock import Clock, system_clock
from pipeline.db import Database
from pipeline.incidents import IncidentService
from pipeline.models import Event, Incident, OutboxKind, OutboxMessage
from pipeline.notify import Notifier
from pipeline.observables import Observables
from pipeline.outbox import Sender
from pipeline.people import People
from pipeline.plugins import Enricher, Responder
from pipeline.policy import Policy
from pipeline.records import Enrichment
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
        people: People | None = None,
        clock: Clock = system_clock,
        replica: str = "",
    ) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock
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
            people=people,
            clock=clock,
        )
        self.worker = Worker(db=db, stages=self, size=policy.worker_concurrency, replica=replica)
        self.sender = Sender(db=db, deliver=self.deliver, clock=clock)
        self.incidents.on_enqueue = self.sender.wakeup.set
        # called with each reloaded policy (``fido serve`` reschedules the jobs it times)
        self.on_reload: list[Callable[[Policy], None]] = []

    async def deliver(self, row: OutboxMessage) -> None:
        """Deliver one outbox row: messages with the notifier (when it can send them: the
        Slack one), cards, actions and notices through the incident service."""
        if row.kind == OutboxKind.message.value:
            notifier = self.incidents.notifier
            messenger = notifier if isinstance(notifier, routing.Messenger) else None
            await routing.deliver(row, db=self.db, messenger=messenger, clock=self.clock)
        else:
            await self.incidents.deliver(row)

    # -- the worker's stages ---------------------------------------------------------------

    def keys(self, event: Event) -> set[str]:
        return self.triage.keys.all(Observables.model_validate(event.observables))

    async def prepare(self, event: Event) -> tuple[Event, Enrichment]:
        return event, await self.triage.enrich(event)

    async def finish(self, prepared: tuple[Event, Enrichment]) -> int:
        event, results = prepared
        outcome = await self.triage.attach(event, results)
        self.sender.wakeup.set()
        assert outcome.incident.id is not None
        return outcome.incident.id

    async def finish_many(
        self, prepared: Sequence[tuple[Event, Enrichment]]
    ) -> list[int | Exception]:
        outcomes = await self.triage.attach_many(prepared)
        self.sender.wakeup.set()
        return [o if isinstance(o, Exception) else _incident_id(o.incident) for o in outcomes]

    async def handle(self, event: Event) -> int:
        """Both stages for one event (what the worker does, without the pool)."""
        return await self.finish(await self.prepare(event))

    async def refresh(self, incident_id: int) -> Incident | None:
        outcome = await self.triage.refresh(incident_id)
        if outcome is None:
            return None
        self.sender.wakeup.set()
        return outcome.incident

    def reload(self, policy: Policy) -> None:
        """Put ``policy`` in force for everything decided from now on, then tell the
        ``on_reload`` hooks. Detectors, enrichers and sources are built at start-up: a
        change to them waits for a restart."""
        for part in ("detectors", "sources", "enrichers", "enricher_options", "lookups"):
            if getattr(policy, part) != getattr(self.policy, part):
                log.warning("policy reload: %s changed; that takes effect at restart", part)
        self.policy = policy
        self.triage.use(policy)
        self.incidents.use(policy)
        for hook in self.on_reload:
            hook(policy)

    async def drain(self) -> int:
        """Process every queued event and deliver what they queued; return the events."""
        handled = await self.worker.drain()
        await self.sender.drain()
        return handled

    async def flush(self) -> int:
        """Deliver what is due in the outbox now (after a click, in tests and the demo)."""
        return await self.sender.drain()

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """The worker and the outbox sender, until ``stop`` is set."""
        await asyncio.gather(self.worker.run(stop, idle=idle), self.sender.run(stop, idle=idle))


def _incident_id(incident: Incident) -> int:
    assert incident.id is not None
    return incident.id
