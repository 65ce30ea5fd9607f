"""``fido serve``: one asyncio process running the HTTP server, the Slack connection, the
pipeline worker and the scheduler; SIGTERM or SIGINT stops them all cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import metrics
from bot.reload import install_policy_reload
from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import build_bolt_app, web_client
from bot.slack.notifier import Pacer, SlackNotifier
from bot.slack.people import SlackPeople
from bot.webhook_auth import RateLimiter
from bot.wiring import Wiring
from pipeline import ask, observe, queue, retention, sources
from pipeline import db as database
from pipeline.digest import run_digest_safely
from pipeline.engine import Engine
from pipeline.leader import CHECK_EVERY, HOLD_EVERY, HeldContainments, Leadership, interrupt_actions
from pipeline.locks import singleton
from pipeline.lookups.deferred import run_deferred
from pipeline.plugins import Detector, HoldsContainment, Source
from pipeline.policy import Policy, load_policy
from pipeline.sla import run_sla

log = logging.getLogger(__name__)


def quiet_scheduler() -> None:
    """APScheduler logs two INFO lines per job run (every few seconds here) and one per job
    added, and uvicorn three lines repeating "Fido listening on …": kept for DEBUG; their
    warnings and errors (missed runs, overlapping runs, a port in use) always show."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in ("apscheduler", "uvicorn.error"):
            logging.getLogger(name).setLevel(logging.WARNING)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns SIGTERM/SIGINT, so the
    worker, scheduler and connections are shut down before the process exits."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def poll_source(
    db: database.Database, source: Source, detector: Detector, wake: Callable[[], None]
) -> None:
    """One scheduled poll, on one replica at a time; a failing source is logged and tried
    again next interval."""
    try:
        async with singleton(db, f"source:{source.name}") as mine:
            if not mine:
                return
            result = await sources.poll(db=db, source=source, detector=detector)
    except Exception as exc:
        log.warning("source %s failed: %s", source.name, exc)
        return
    observe.observer().polled(
        detector.name,
        accepted=len(result.created),
        duplicates=result.duplicates,
        dead=result.dead_letters,
    )
    if result.created:
        wake()
    if result.created or result.dead_letters:
        log.info(
            "source %s: %d new events, %d duplicates, %d dead letters",
            source.name,
            len(result.created),
            result.duplicates,
            result.dead_letters,
        )


async def run_deferred_safely(engine: Engine) -> None:
    """Finish lookups that waited for quota; a failure is logged and retried next time."""
    try:
        answered = await run_deferred(engine)
    except Exception:
        log.exception("deferred lookups failed")
        return
    if answered:
        log.info("answered %d deferred lookups", answered)


def policy_intervals(policy: Policy) -> dict[str, float]:
    """Seconds between runs of the jobs whose interval the policy sets."""
    return {
        "digest": policy.digest.interval_minutes * 60,
        "retention": policy.retention.interval_minutes * 60,
    }


def reschedule(scheduler: AsyncIOScheduler, policy: Policy) -> None:
    """After a policy reload: a job whose interval the policy changed runs at the new one,
    counted from now; the others keep their times."""
    for job_id, seconds in policy_intervals(policy).items():
        job = scheduler.get_job(job_id)
        if job is None or job.trigger.interval == timedelta(seconds=seconds):
            continue
        scheduler.reschedule_job(job_id, trigger="interval", seconds=seconds)
        log.info("policy reload: %s now runs every %g minutes", job_id, seconds / 60)


def schedule_jobs(
    scheduler: AsyncIOScheduler,
    engine: Engine,
    leadership: Leadership,
    *,
    polled: Sequence[tuple[Source, Detector, float]],
    holding: HeldContainments | None = None,
) -> None:
    """Every periodic job of ``fido serve``. The queue sweep, the leadership check and the
    containment holding (which itself holds on the leader and lets go elsewhere) run on
    every replica, each source under a lock of its own; the rest are singletons, wrapped
    in ``only_leader``. A policy reload reschedules what the policy times."""
    db, policy = engine.db, engine.policy
    intervals = policy_intervals(policy)
    # A safety net for the wake-up signal: resumes events left by a crash or a lost wake-up.
    scheduler.add_job(engine.worker.wakeup.set, "interval", seconds=30, id="queue-sweep")
    # Leadership: every replica checks it; singleton jobs are wrapped in only_leader.
    scheduler.add_job(
        leadership.campaign, "interval", seconds=CHECK_EVERY, id="leadership", max_instances=1
    )
    if holding is not None:
        scheduler.add_job(  # on the leader, they follow the database; elsewhere, let go
            holding.run,
            "interval",
            seconds=HOLD_EVERY,
            id="containment-holding",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
    scheduler.add_job(  # events claimed by a replica that died are put back at once
        leadership.only_leader(leadership.reclaim),
        "interval",
        seconds=5,
        id="reclaim",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        leadership.only_leader(run_deferred_safely),
        "interval",
        seconds=policy.lookups.deferred_interval_seconds,
        id="deferred-lookups",
        args=(engine,),
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(  # time-boxed containments whose time has come are undone
        leadership.only_leader(engine.incidents.expire_due),
        "interval",
        seconds=60,
        id="containment-expiry",
        max_instances=1,
        coalesce=True,
    )
    # low-score incidents in one digest; approvals reminded, escalated, timed out; users'
    # unanswered questions (pipeline/digest.py, sla.py, ask.py)
    scheduler.add_job(
        leadership.only_leader(
            lambda: run_digest_safely(engine.db, policy=engine.policy, clock=engine.triage.clock)
        ),
        "interval",
        seconds=intervals["digest"],
        id="digest",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        leadership.only_leader(lambda: run_sla(engine.incidents)),
        "interval",
        seconds=15,
        id="approval-sla",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        leadership.only_leader(lambda: ask.run_timeouts(engine)),
        "interval",
        seconds=15,
        id="ask-timeouts",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(  # raw payloads and enrichment past the policy's days
        leadership.only_leader(retention.run),
        "interval",
        seconds=intervals["retention"],
        id="retention",
        args=(db, lambda: engine.policy.retention, engine.incidents.now),
        max_instances=1,
        coalesce=True,
    )
    for source, detector, interval in polled:
        scheduler.add_job(
            poll_source,
            "interval",
            seconds=interval,
            id=f"source:{source.name}",
            args=(db, source, detector, engine.worker.wakeup.set),
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
    engine.on_reload.append(lambda new: reschedule(scheduler, new))


async def _connected(handler: Any) -> bool:
    """Whether the Socket Mode connection (once made) is up, for /readyz."""
    return handler is not None and bool(await handler.client.is_connected())


REQUIRED = ("FIDO_WEBHOOK_TOKEN", "SLACK_BOT_TOKEN", "FIDO_SLACK_CHANNEL")


def check(settings: Settings) -> None:
    """Stop at the first missing setting, naming it (raises ConfigError)."""
    settings.require(*REQUIRED)
    if settings.slack_app_token is None:
        settings.require("SLACK_SIGNING_SECRET")


async def serve(settings: Settings) -> None:
    check(settings)
    policy = load_policy(settings.config)
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
    wiring = Wiring(settings, policy, http=http)
    detectors, responders = wiring.detectors(), wiring.responders()
    polled = wiring.sources()
    await database.upgrade_when_reachable(settings.database_url)  # retries, one line each
    db = database.Database(settings.database_url, replica=settings.replica)
    leadership = Leadership(db, replica=settings.replica)  # singleton jobs run on the leader
    await leadership.start()
    enrichers = metrics.timed_enrichers(wiring.enrichers(db))  # fido_enricher_seconds
    released = await queue.release(db, replica=settings.replica)
    if released:
        log.info("released %d events this replica (%s) left in flight", released, settings.replica)
    await interrupt_actions(db, replica=settings.replica)  # never run twice: a person decides
    slack_session = aiohttp.ClientSession()  # pooled connections for every Web API call
    client = web_client(settings, slack_session)
    assert settings.slack_channel is not None
    engine = Engine(
        db=db,
        policy=policy,
        enrichers=enrichers,
        responders=responders,
        notifier=SlackNotifier(
            client,
            channel=settings.slack_channel,
            labels=wiring.labels(responders),
            reversible={name for name, r in responders.items() if r.reversible},
            plan=lambda responder, target, facts: responders[responder].plan(target, facts),
            # within Slack's per-channel and per-method rate limits
            pacer=Pacer(per_channel=settings.slack_messages_per_second),
        ),
        people=SlackPeople(client),
        approvers=settings.approvers,
        replica=settings.replica,
    )
    holding = HeldContainments(  # containments a responder keeps in force itself
        leadership, {n: r for n, r in responders.items() if isinstance(r, HoldsContainment)}
    )
    bolt = build_bolt_app(settings, engine, client, wiring.labels(responders))
    socket_mode = settings.slack_app_token is not None
    api = build_http_app(
        db=db,
        detectors=detectors,
        webhook_token=settings.webhook_token,
        auth=wiring.webhook_auth(),
        bolt=None if socket_mode else bolt,
        on_ingest=engine.worker.wakeup.set,
        incidents=engine.incidents,
        limiter=RateLimiter(lambda: engine.policy.webhook_rate),
        door=engine.worker.door,
        readiness={  # beside the database and migrations; names are looked up when asked
            "scheduler": observe.running(
                "the scheduler or the worker", lambda: scheduler.running and not worker.done()
            ),
            **(
                {"slack": observe.connected("Socket Mode", lambda: _connected(socket_handler))}
                if socket_mode
                else {}
            ),
        },
    )
    metrics.install(api, detectors)
    stop = asyncio.Event()
    scheduler = AsyncIOScheduler()
    quiet_scheduler()
    schedule_jobs(scheduler, engine, leadership, polled=polled, holding=holding)
    scheduler.start()
    # what start-up made lives as long as the process: keep it out of the garbage
    # collector's full passes, which would otherwise pause every request now and then
    gc.collect()
    gc.freeze()
    worker = asyncio.create_task(engine.run(stop), name="fido-engine")
    socket_handler = None
    if socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert settings.slack_app_token is not None
        socket_handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value())
        log.info("connecting to Slack in Socket Mode")
        await socket_handler.connect_async()
        log.info("connected to Slack in Socket Mode")
    server = _Server(
        uvicorn.Config(
            api,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            lifespan="off",
            # a line per request at INFO would drown the log (fido_webhook_* counts them)
            access_log=log.isEnabledFor(logging.DEBUG),
        )
    )

    def on_signal(signum: int) -> None:
        log.info("received %s", signal.Signals(signum).name)
        server.force_exit = server.should_exit  # a second signal skips the graceful wait
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    install_policy_reload(loop, settings.config, engine.reload)
    log.info("Fido listening on http://%s:%s", settings.http_host, settings.http_port)
    try:
        await server.serve()  # returns once a signal sets should_exit
    finally:
        log.info("shutting down")
        stop.set()
        await worker
        scheduler.shutdown(wait=False)
        await holding.release()
        await leadership.stop()
        if socket_handler is not None:
            await socket_handler.close_async()
        await http.aclose()
        await slack_session.close()
        await db.dispose()
