"""What ``fido serve`` schedules: every job by its id, the singleton ones running only on
the leader, intervals from the policy, and a policy reload moving them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import service
from pipeline import ask, retention
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.leader import Leadership
from pipeline.policy import Policy

SINGLETONS = {
    "reclaim": "reclaim",
    "deferred-lookups": "run_deferred_safely",
    "containment-expiry": "expire_due",
    "digest": "run_digest_safely",
    "approval-sla": "run_sla",
    "ask-timeouts": "run_timeouts",
    "retention": "retention",
}
EVERY_REPLICA = {"queue-sweep", "leadership"}


def make_policy(*, digest: float = 7.5, retention: float = 90) -> Policy:
    return Policy(digest={"interval_minutes": digest}, retention={"interval_minutes": retention})


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """What each singleton job calls, counted instead of run."""
    calls = dict.fromkeys(SINGLETONS.values(), 0)

    def counting(name: str) -> Any:
        async def job(*args: Any, **kwargs: Any) -> None:
            calls[name] += 1

        return job

    monkeypatch.setattr(service, "run_deferred_safely", counting("run_deferred_safely"))
    monkeypatch.setattr(service, "run_digest_safely", counting("run_digest_safely"))
    monkeypatch.setattr(service, "run_sla", counting("run_sla"))
    monkeypatch.setattr(ask, "run_timeouts", counting("run_timeouts"))
    monkeypatch.setattr(retention, "run", counting("retention"))
    monkeypatch.setattr(Leadership, "reclaim", lambda self: counting("reclaim")())
    return calls


@pytest.fixture
async def scheduled(
    db: Database, ran: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[AsyncIOScheduler, Engine, Leadership]]:
    engine = Engine(db=db, policy=make_policy())

    async def expire_due() -> int:
        ran["expire_due"] += 1
        return 0

    monkeypatch.setattr(engine.incidents, "expire_due", expire_due)
    leadership = Leadership(db, replica="r1")
    scheduler = AsyncIOScheduler()
    service.schedule_jobs(scheduler, engine, leadership, polled=[])
    scheduler.start(paused=True)  # the jobs are called by hand here
    yield scheduler, engine, leadership
    scheduler.shutdown(wait=False)


def interval(scheduler: AsyncIOScheduler, job_id: str) -> timedelta:
    job = scheduler.get_job(job_id)
    assert job is not None, job_id
    found = job.trigger.interval
    assert isinstance(found, timedelta)
    return found


async def run(scheduler: AsyncIOScheduler, job_id: str) -> None:
    job = scheduler.get_job(job_id)
    assert job is not None, job_id
    await job.func(*job.args, **job.kwargs)


async def test_serve_schedules_every_job_with_the_policys_intervals(
    scheduled: tuple[AsyncIOScheduler, Engine, Leadership],
) -> None:
    scheduler, _, _ = scheduled
    assert {job.id for job in scheduler.get_jobs()} == set(SINGLETONS) | EVERY_REPLICA
    assert interval(scheduler, "digest") == timedelta(seconds=7.5 * 60)
    assert interval(scheduler, "retention") == timedelta(minutes=90)
    assert interval(scheduler, "approval-sla") == timedelta(seconds=15)
    assert interval(scheduler, "ask-timeouts") == timedelta(seconds=15)


async def test_singleton_jobs_run_only_on_the_leader(
    scheduled: tuple[AsyncIOScheduler, Engine, Leadership], ran: dict[str, int]
) -> None:
    scheduler, _, leadership = scheduled
    leadership.leader = False  # another replica leads
    for job_id in SINGLETONS:
        await run(scheduler, job_id)
    assert ran == dict.fromkeys(SINGLETONS.values(), 0)

    leadership.leader = True
    for job_id in SINGLETONS:
        await run(scheduler, job_id)
    assert ran == dict.fromkeys(SINGLETONS.values(), 1)  # each job calls its own work


async def test_every_replica_sweeps_its_queue_and_campaigns(
    scheduled: tuple[AsyncIOScheduler, Engine, Leadership],
) -> None:
    scheduler, engine, leadership = scheduled
    leadership.leader = False
    engine.worker.wakeup.clear()
    job = scheduler.get_job("queue-sweep")
    assert job is not None
    job.func()  # not wrapped: the wake-up is set on every replica
    assert engine.worker.wakeup.is_set()
    campaign = scheduler.get_job("leadership")
    assert campaign is not None  # not wrapped either: every replica campaigns
    assert campaign.func == leadership.campaign


async def test_a_policy_reload_reschedules_what_the_policy_times(
    scheduled: tuple[AsyncIOScheduler, Engine, Leadership],
) -> None:
    scheduler, engine, _ = scheduled
    sla = scheduler.get_job("approval-sla")
    assert sla is not None
    untouched = sla.next_run_time
    digest = scheduler.get_job("digest")
    assert digest is not None
    before = digest.next_run_time

    engine.reload(make_policy(digest=2, retention=30))
    assert interval(scheduler, "digest") == timedelta(minutes=2)
    assert interval(scheduler, "retention") == timedelta(minutes=30)
    moved = scheduler.get_job("digest")
    assert moved is not None and moved.next_run_time < before  # the new interval counts now
    still = scheduler.get_job("approval-sla")
    assert still is not None and still.next_run_time == untouched

    kept = moved.next_run_time
    engine.reload(make_policy(digest=2, retention=30))  # the same times: nothing moves
    again = scheduler.get_job("digest")
    assert again is not None and again.next_run_time == kept
