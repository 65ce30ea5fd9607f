"""``GET /metrics`` for Prometheus.

Two kinds of series, and nothing in either carries a secret or an alert's content:

- **From the database, at each scrape**, so every replica reports the same truth: events by
  queue status, the queue's depth and its oldest alert's age, alerts stored by detector,
  incidents by decision, closed incidents by verdict, actions by status and by responder and
  status, dead letters, lookups waiting for quota, the outbox's depth, oldest row and failed
  rows, alerts silenced by each suppression, and over the last 7 days (``pipeline/stats.py``)
  the mean time to acknowledge, approve and contain and the precision of automatic actions.
- **From this process** (``Recorder``, the pipeline's ``Observer``; sum them over replicas):
  webhook deliveries and alerts received, accepted, duplicate and rejected per detector;
  stage latency histograms (enrich, triage, send); each enricher's round latency
  (``TimedEnricher``) and, for lookups, each provider call's latency and cache hits and
  misses; quota waits per provider; outbox deliveries by kind and outcome; Slack's 429s.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pipeline import observe
from pipeline.incidents import IncidentService
from pipeline.lookups.enricher import LookupEnricher
from pipeline.observables import Observables
from pipeline.plugins import Enricher, Facts

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATS_EVERY = 30.0  # seconds the 7-day figures are reused between scrapes
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Recorder:
    """This process's counters and histograms; implements ``pipeline.observe.Observer``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "fido_webhook_deliveries",
            "Webhook deliveries, by detector and outcome (accepted, rejected, error)",
            ["detector", "outcome"],
            registry=r,
        )
        self.alerts = Counter(
            "fido_alerts",
            "Alerts in webhook deliveries and from polled sources, by detector and outcome "
            "(received, accepted, duplicate, dead_letter); a refused delivery counts in "
            "fido_webhook_deliveries",
            ["detector", "outcome"],
            registry=r,
        )
        self.rejected = Counter(
            "fido_webhook_rejected",
            "Webhook deliveries refused, by detector and HTTP status",
            ["detector", "status"],
            registry=r,
        )
        self.stages = Histogram(
            "fido_stage_seconds",
            "Time per stage: enrich (one event), triage (one batch), send (one delivery)",
            ["stage"],
            buckets=BUCKETS,
            registry=r,
        )
        self.lookups = Histogram(
            "fido_lookup_seconds",
            "Time per call to a lookup's provider, by enricher",
            ["enricher"],
            buckets=BUCKETS,
            registry=r,
        )
        self.enrichers = Histogram(
            "fido_enricher_seconds",
            "Time per round of an enricher answering for a set of observables (directory)",
            ["enricher"],
            buckets=BUCKETS,
            registry=r,
        )
        self.cache_results = Counter(
            "fido_lookup_cache",
            "Indicators looked up, by enricher and result (hit: from the cache, miss: not)",
            ["enricher", "result"],
            registry=r,
        )
        self.quota = Counter(
            "fido_lookup_quota_waits",
            "Lookups deferred, by provider and reason (quota, rate_limited)",
            ["provider", "reason"],
            registry=r,
        )
        self.outbox = Counter(
            "fido_outbox_deliveries",
            "Outbox delivery attempts, by kind and outcome (sent, held, rate_limited, error)",
            ["kind", "outcome"],
            registry=r,
        )
        self.slack_429 = Counter(
            "fido_slack_rate_limited",
            "Slack Web API answers of 429 (rate limited), by method, whoever called",
            ["method"],
            registry=r,
        )

    # -- pipeline.observe.Observer ------------------------------------------------------------

    def stage(self, stage: str, seconds: float) -> None:
        self.stages.labels(stage).observe(seconds)

    def lookup(self, enricher: str, seconds: float) -> None:
        self.lookups.labels(enricher).observe(seconds)

    def enricher(self, enricher: str, seconds: float) -> None:
        self.enrichers.labels(enricher).observe(seconds)

    def cache(self, enricher: str, *, hits: int, misses: int) -> None:
        if hits:
            self.cache_results.labels(enricher, "hit").inc(hits)
        if misses:
            self.cache_results.labels(enricher, "miss").inc(misses)

    def quota_wait(self, provider: str, reason: str) -> None:
        self.quota.labels(provider, reason).inc()

    def delivery(self, kind: str, outcome: str) -> None:
        self.outbox.labels(kind, outcome).inc()

    def rate_limited(self, service: str, method: str) -> None:
        if service == "slack":
            self.slack_429.labels(method).inc()

    def polled(self, detector: str, *, accepted: int, duplicates: int, dead: int) -> None:
        self.alerts.labels(detector, "received").inc(accepted + duplicates + dead)
        self.alerts.labels(detector, "accepted").inc(accepted)
        self.alerts.labels(detector, "duplicate").inc(duplicates)
        if dead:
            self.alerts.labels(detector, "dead_letter").inc(dead)

    # -- webhooks -----------------------------------------------------------------------------

    def webhook(self, detector: str, status: int, answer: bytes) -> None:
        if status == 202:
            self.deliveries.labels(detector, "accepted").inc()
            try:
                body = json.loads(answer)
                accepted, duplicates = len(body["accepted"]), len(body["duplicates"])
            except (ValueError, KeyError, TypeError):
                return
            self.alerts.labels(detector, "received").inc(accepted + duplicates)
            self.alerts.labels(detector, "accepted").inc(accepted)
            self.alerts.labels(detector, "duplicate").inc(duplicates)
            return
        self.deliveries.labels(detector, "error" if status >= 500 else "rejected").inc()
        self.rejected.labels(detector, str(status)).inc()


class WebhookMetrics:
    """ASGI middleware counting webhook deliveries and their alerts per detector. Only
    detectors Fido knows are named; any other path counts as ``unknown``, so a scanner
    cannot make up series."""

    def __init__(self, app: Any, *, recorder: Recorder, detectors: Collection[str]) -> None:
        self.app = app
        self.recorder = recorder
        self.detectors = frozenset(detectors)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not path.startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        name = path.removeprefix("/webhooks/")
        detector = name if name in self.detectors else "unknown"
        status = 500
        answer: list[bytes] = []

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status == 202:
                answer.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.recorder.webhook(detector, status, b"".join(answer))


class TimedEnricher:
    """An enricher whose every round is reported to the observer (``fido_enricher_seconds``);
    anything else is the wrapped enricher's."""

    def __init__(self, inner: Enricher) -> None:
        self.inner = inner
        self.name = inner.name

    async def enrich(self, observables: Observables) -> Facts:
        started = time.perf_counter()
        try:
            return await self.inner.enrich(observables)
        finally:
            observe.observer().enricher(self.name, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def timed_enrichers(enrichers: Sequence[Enricher]) -> list[Enricher]:
    """``enrichers`` with each round timed; lookups time each provider call themselves
    (``fido_lookup_seconds``) and stay as they are, for what recognises them."""
    return [e if isinstance(e, LookupEnricher) else TimedEnricher(e) for e in enrichers]


_recorder: Recorder | None = None
_week: dict[str, tuple[float, Any]] = {}  # database URL → (monotonic time, Stats)


def install(api: Any, detectors: Collection[str]) -> Recorder:
    """Record this process's series from now on: the pipeline's observer, and the webhook
    middleware on ``api`` (a FastAPI app not yet started)."""
    global _recorder
    recorder = Recorder()
    observe.use(recorder)
    _recorder = recorder
    api.add_middleware(WebhookMetrics, recorder=recorder, detectors=detectors)
    return recorder


def uninstall() -> None:
    global _recorder
    observe.use(None)
    _recorder = None


async def _stats(incidents: IncidentService) -> Any:
    """The last 7 days' figures, reused for ``STATS_EVERY`` seconds; None if unavailable."""
    from pipeline import stats

    key = incidents.db.url
    cached = _week.get(key)
    if cached is not None and time.monotonic() - cached[0] < STATS_EVERY:
        return cached[1]
    week = await stats.stats(incidents.db, now=incidents.now())
    _week[key] = (time.monotonic(), week)
    return week


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


async def render(incidents: IncidentService) -> bytes:
    registry = CollectorRegistry()
    counts = await incidents.counts()
    db = incidents.db
    backlog = await observe.backlog(db, now=incidents.now())
    tallies = await observe.tallies(db)
    for name, doc, labels, values in (
        ("fido_events", "Alerts stored, by queue status", ["status"], counts.events),
        ("fido_alerts_stored", "Alerts stored, by detector", ["detector"], tallies.alerts),
        ("fido_incidents", "Incidents, by decision", ["decision"], counts.incidents),
        ("fido_incident_verdicts", "Closed incidents, by verdict", ["verdict"], counts.verdicts),
        ("fido_actions", "Containment actions, by status", ["status"], counts.actions),
        (
            "fido_actions_by_responder",
            "Containment actions, by responder and status (the outcome)",
            ["responder", "status"],
            tallies.actions,
        ),
        (
            "fido_dead_letters",
            "Unparsable payloads kept, by status",
            ["status"],
            counts.dead_letters,
        ),
        (
            "fido_outbox_messages",
            "Messages (cards, automatic actions) not delivered yet, by status",
            ["status"],
            counts.outbox,
        ),
        (
            "fido_suppressed_alerts",
            "Alerts silenced, by suppression (db:ID or policy:NAME)",
            ["suppression"],
            counts.suppressed,
        ),
    ):
        gauge = Gauge(name, doc, labels, registry=registry)
        for value, count in values.items():
            gauge.labels(*(value if isinstance(value, tuple) else (value,))).set(count)
    singles: list[tuple[str, str, float | None]] = [
        (
            "fido_deferred_lookups",
            "Lookups waiting for a provider's quota",
            counts.deferred_lookups,
        ),
        ("fido_queue_depth", "Alerts waiting to be claimed", backlog.pending),
        (
            "fido_queue_oldest_seconds",
            "Age of the oldest alert waiting to be claimed (0: none waiting)",
            _seconds(backlog.oldest_pending) or 0.0,
        ),
        ("fido_outbox_depth", "Outbox messages waiting to be delivered", backlog.outbox_due),
        (
            "fido_outbox_oldest_seconds",
            "Age of the oldest outbox message waiting (0: none waiting)",
            _seconds(backlog.oldest_outbox) or 0.0,
        ),
    ]
    try:
        week = await _stats(incidents)
    except Exception as exc:  # the other figures still go out
        log.warning("metrics: the 7-day figures failed: %s", exc)
        week = None
    if week is not None:
        singles += [
            (
                "fido_time_to_acknowledge_seconds",
                "Mean time from an incident's creation to a person's first action (7 days)",
                _seconds(week.to_acknowledge),
            ),
            (
                "fido_time_to_approve_seconds",
                "Mean time from an incident's creation to its first approval (7 days)",
                _seconds(week.to_approve),
            ),
            (
                "fido_time_to_contain_seconds",
                "Mean time from an incident's creation to its first successful action (7 days)",
                _seconds(week.to_contain),
            ),
            (
                "fido_auto_action_precision",
                "Of incidents acted on automatically and closed with a verdict, the share "
                "that were true positives (7 days)",
                week.precision.value,
            ),
            (
                "fido_auto_action_judged",
                "Incidents acted on automatically and closed with a verdict (7 days)",
                week.precision.judged,
            ),
        ]
    for name, doc, number in singles:
        if number is not None:  # no figure (e.g. nothing approved this week): no sample
            Gauge(name, doc, registry=registry).set(number)
    text = generate_latest(registry)
    if _recorder is not None:
        text += generate_latest(_recorder.registry)
    return text
