"""``GET /metrics``: scraped as Prometheus does, and the values move with what happens —
webhook deliveries per detector, the queue, stage latencies, lookups (cache, quota), the
outbox and Slack's 429s, actions by responder and outcome, the 7-day times and precision."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError

from bot import metrics, service
from bot.server import build_http_app
from bot.settings import Settings
from bot.slack.app import web_client
from bot.slack.notifier import SlackNotifier
from integrations.detectors.generic import GenericDetector
from pipeline import observe, sources
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.errors import IntegrationError
from pipeline.lookups.enricher import LookupEnricher, lookup_enrichers
from pipeline.models import CloseVerdict
from pipeline.observables import Observables
from pipeline.policy import ActionPolicy, Thresholds
from tests.bot.test_serve import TOKEN as SERVE_TOKEN
from tests.bot.test_serve import fido, serve_env, wait_healthy
from tests.fixtures.servers import free_port
from tests.fixtures.slack import FakeSlack
from tests.pipeline.fakes import DirectoryEnricher, LockResponder
from tests.pipeline.lookups.fakes import ReputationLookup
from tests.pipeline.lookups.helpers import policy as lookup_policy

TOKEN = "metrics-webhook-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
APPROVER = "UAPPROVER1"
SHA_KNOWN, SHA_OTHER = "a" * 64, "b" * 64


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when Prometheus would see no such series yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(autouse=True)
def fresh_recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(metrics, "STATS_EVERY", 0.0)  # the 7-day figures fresh each scrape
    yield
    metrics.uninstall()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def engine(db: Database, fake_slack: FakeSlack, clock: Clock) -> Engine:
    rules = lookup_policy(per_minute=1)
    rules.actions = [ActionPolicy(responder="test_lock")]
    rules.thresholds = Thresholds(notify=0, ask_approval=10, auto_act=40)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_API_URL=fake_slack.base_url,
    )
    return Engine(
        db=db,
        policy=rules,
        enrichers=metrics.timed_enrichers(  # as fido serve wires them
            [
                DirectoryEnricher({"alice": {"display_name": "Alice"}, "bob": {}}),
                *lookup_enrichers(
                    [ReputationLookup({SHA_KNOWN: {"verdict": "malicious"}})],
                    db=db,
                    policy=rules,
                    clock=clock,
                ),
            ]
        ),
        responders={"test_lock": LockResponder()},
        notifier=SlackNotifier(web_client(settings), channel="C0METRICS"),
        approvers=[APPROVER],
        clock=clock,
    )


@pytest.fixture
async def client(db: Database, engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    api = build_http_app(
        db=db,
        detectors={"generic": GenericDetector()},
        webhook_token=SecretStr(TOKEN),
        incidents=engine.incidents,
    )
    metrics.install(api, ["generic"])
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://fido.test") as c:
        yield c


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def alert(external_id: str, **fields: Any) -> str:
    return json.dumps({"id": external_id, "title": f"alert {external_id}", **fields})


async def test_webhook_deliveries_and_the_queue(
    client: httpx.AsyncClient, engine: Engine, clock: Clock
) -> None:
    before = await scrape(client)
    assert (
        value(before, "fido_webhook_deliveries_total", detector="generic", outcome="accepted") == 0
    )
    assert value(before, "fido_queue_depth") == 0
    assert value(before, "fido_queue_oldest_seconds") == 0

    batch = json.dumps([json.loads(alert("w1")), json.loads(alert("w2"))])
    assert (await client.post("/webhooks/generic", content=batch, headers=AUTH)).status_code == 202
    again = alert("w1")
    assert (await client.post("/webhooks/generic", content=again, headers=AUTH)).status_code == 202
    wrong = {**AUTH, "Authorization": "Bearer wrong"}
    assert (await client.post("/webhooks/generic", content=again, headers=wrong)).status_code == 401
    plain = {**AUTH, "Content-Type": "text/plain"}
    assert (await client.post("/webhooks/generic", content=again, headers=plain)).status_code == 415
    made_up = "/webhooks/made-up-detector-name"
    assert (await client.post(made_up, content=again, headers=AUTH)).status_code == 404
    clock.advance(90)  # the alerts have waited 90 s when scraped

    after = await scrape(client)
    deliveries = "fido_webhook_deliveries_total"
    assert value(after, deliveries, detector="generic", outcome="accepted") == 2
    assert value(after, deliveries, detector="generic", outcome="rejected") == 2
    assert value(after, deliveries, detector="unknown", outcome="rejected") == 1
    assert value(after, "fido_alerts_total", detector="generic", outcome="received") == 3
    assert value(after, "fido_alerts_total", detector="generic", outcome="accepted") == 2
    assert value(after, "fido_alerts_total", detector="generic", outcome="duplicate") == 1
    assert value(after, "fido_webhook_rejected_total", detector="generic", status="401") == 1
    assert value(after, "fido_webhook_rejected_total", detector="generic", status="415") == 1
    assert value(after, "fido_webhook_rejected_total", detector="unknown", status="404") == 1
    assert not any("made-up" in str(labels) for _, labels in after)  # no series from a URL
    assert value(after, "fido_alerts_stored", detector="generic") == 2
    assert value(after, "fido_queue_depth") == 2
    assert 89 <= value(after, "fido_queue_oldest_seconds") <= 95
    assert value(after, "fido_events", status="pending") == 2

    await engine.drain()
    drained = await scrape(client)
    assert value(drained, "fido_queue_depth") == 0
    assert value(drained, "fido_queue_oldest_seconds") == 0
    assert value(drained, "fido_stage_seconds_count", stage="enrich") == 2
    assert value(drained, "fido_stage_seconds_count", stage="triage") >= 1


async def test_pipeline_lookups_outbox_and_actions_move_the_metrics(
    client: httpx.AsyncClient, engine: Engine, fake_slack: FakeSlack, clock: Clock
) -> None:
    if clock.now.second >= 50:  # keep the test's few seconds inside one quota minute
        clock.advance(61 - clock.now.second)
    fake_slack.fail_next("chat.postMessage", status=429, headers={"Retry-After": "1"})
    first = alert("p1", severity="critical", user="alice", hash=SHA_KNOWN)
    assert (await client.post("/webhooks/generic", content=first, headers=AUTH)).status_code == 202
    await engine.drain()  # the card meets Slack's 429 and waits a second
    held = await scrape(client)
    assert value(held, "fido_slack_rate_limited_total", method="chat.postMessage") == 1
    assert value(held, "fido_outbox_deliveries_total", kind="card", outcome="rate_limited") == 1
    assert value(held, "fido_outbox_depth") >= 1
    assert value(held, "fido_lookup_cache_total", enricher="test_reputation", result="miss") == 1
    assert value(held, "fido_lookup_seconds_count", enricher="test_reputation") == 1
    assert value(held, "fido_enricher_seconds_count", enricher="test_directory") == 1
    assert value(held, "fido_enricher_seconds_count", enricher="test_reputation") == 0
    assert value(held, "fido_stage_seconds_count", stage="send") >= 2

    clock.advance(2)
    await engine.flush()
    sent = await scrape(client)
    assert value(sent, "fido_outbox_deliveries_total", kind="card", outcome="sent") >= 1
    assert value(sent, "fido_outbox_deliveries_total", kind="act", outcome="sent") == 1
    assert value(sent, "fido_outbox_depth") == 0
    assert value(sent, "fido_actions_by_responder", responder="test_lock", status="succeeded") == 1
    assert value(sent, "fido_time_to_contain_seconds") >= 0
    assert ("fido_time_to_contain_seconds", frozenset()) in sent
    assert ("fido_auto_action_precision", frozenset()) not in sent  # nothing judged yet

    # the same hash again: from the cache; another one: past the provider's 1 a minute
    second = alert("p2", severity="low", user="bob", hash=SHA_KNOWN)
    third = alert("p3", severity="low", user="bob", hash=SHA_OTHER)
    for body in (second, third):
        assert (
            await client.post("/webhooks/generic", content=body, headers=AUTH)
        ).status_code == 202
    await engine.drain()
    later = await scrape(client)
    assert value(later, "fido_lookup_cache_total", enricher="test_reputation", result="hit") == 1
    assert value(later, "fido_lookup_quota_waits_total", provider="test_vt", reason="quota") == 1
    assert value(later, "fido_deferred_lookups") == 1

    [contained] = [i for i in await engine.incidents.open_incidents() if "p1" in i.title]
    assert contained.id is not None
    await engine.incidents.close(
        incident_id=contained.id, verdict=CloseVerdict.true_positive, actor=APPROVER
    )
    judged = await scrape(client)
    assert value(judged, "fido_auto_action_precision") == 1.0
    assert value(judged, "fido_auto_action_judged") == 1
    assert value(judged, "fido_incident_verdicts", verdict="true_positive") == 1
    assert ("fido_time_to_acknowledge_seconds", frozenset()) in judged


async def test_metrics_name_no_secret_and_no_alert_content(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    body = alert("s1", severity="high", user="alice", detail="xoxb-not-for-metrics")
    assert (await client.post("/webhooks/generic", content=body, headers=AUTH)).status_code == 202
    await engine.drain()
    text = (await client.get("/metrics")).text
    assert TOKEN not in text
    assert "xoxb-not-for-metrics" not in text and "alice" not in text


async def test_without_a_recorder_the_database_series_still_answer(db: Database) -> None:
    metrics.uninstall()
    api = build_http_app(db=db, detectors={}, webhook_token=SecretStr(TOKEN))
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://fido.test") as c:
        samples = await scrape(c)
    assert value(samples, "fido_queue_depth") == 0
    assert not any(name.startswith("fido_stage_seconds") for name, _ in samples)


def test_fido_serve_records_its_own_series(tmp_path: Path, fake_slack: FakeSlack) -> None:
    """As wired by ``fido serve``: the middleware and the pipeline's observer installed."""
    (tmp_path / "fido.yml").write_text("enrichers: []\nactions: [{responder: log_only}]\n")
    port = free_port()
    env = serve_env(tmp_path, fake_slack, port=port, channel="C0SCRAPE")
    process = fido("serve", env=env, cwd=tmp_path)
    try:
        base = wait_healthy(process, port)
        headers = {**AUTH, "Authorization": f"Bearer {SERVE_TOKEN}"}
        body = alert("serve-1", severity="critical", user="alice")
        assert (
            httpx.post(f"{base}/webhooks/generic", content=body, headers=headers).status_code == 202
        )
        deadline = time.monotonic() + 30
        while not fake_slack.calls("chat.postMessage"):
            assert time.monotonic() < deadline, "no card was posted"
            time.sleep(0.1)
        time.sleep(0.5)  # the delivery is settled just after Slack answers
        samples = parse(httpx.get(f"{base}/metrics").text)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert value(samples, "fido_alerts_total", detector="generic", outcome="accepted") == 1
    assert value(samples, "fido_stage_seconds_count", stage="enrich") == 1
    assert value(samples, "fido_outbox_deliveries_total", kind="card", outcome="sent") == 1
    assert value(samples, "fido_queue_depth") == 0


async def test_timed_enrichers_keep_what_the_pipeline_recognises(db: Database) -> None:
    [directory, reputation] = metrics.timed_enrichers(
        [
            DirectoryEnricher({"alice": {}}, fail=True),
            *lookup_enrichers([ReputationLookup()], db=db, policy=lookup_policy()),
        ]
    )
    assert isinstance(reputation, LookupEnricher)  # triage and reads look for these
    assert directory.name == "test_directory"
    assert directory.users == {"alice": {}}  # type: ignore[attr-defined]
    recorder = metrics.Recorder()
    observe.use(recorder)
    with pytest.raises(IntegrationError):  # a failed round is timed too
        await directory.enrich(Observables(users=["alice"]))
    samples = parse(generate_latest(recorder.registry).decode())
    assert value(samples, "fido_enricher_seconds_count", enricher="test_directory") == 1


async def test_every_slack_429_is_counted_by_method_whoever_called(
    client: httpx.AsyncClient, fake_slack: FakeSlack
) -> None:
    """Not only the outbox's: App Home's views.publish and a look-up of a person too."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=fake_slack.token,
        SLACK_API_URL=fake_slack.base_url,
    )
    slack = web_client(settings)
    for method in ("views.publish", "users.info"):
        fake_slack.fail_next(method, status=429, headers={"Retry-After": "1"})
    with pytest.raises(SlackApiError):
        await slack.views_publish(user_id="U1", view={"type": "home", "blocks": []})
    with pytest.raises(SlackApiError):
        await slack.users_info(user="U1")
    await slack.users_info(user="U1")  # answered: not counted
    samples = await scrape(client)
    assert value(samples, "fido_slack_rate_limited_total", method="views.publish") == 1
    assert value(samples, "fido_slack_rate_limited_total", method="users.info") == 1


async def test_a_polled_sources_alerts_are_counted_by_detector(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def poll(**_: Any) -> sources.PollResult:
        return sources.PollResult(created=[1, 2, 3], duplicates=2, dead_letters=1)

    monkeypatch.setattr(sources, "poll", poll)
    woken: list[bool] = []
    source, detector = SimpleNamespace(name="s1_api"), SimpleNamespace(name="sentinelone")
    await service.poll_source(db, source, detector, lambda: woken.append(True))  # type: ignore[arg-type]
    samples = await scrape(client)
    assert woken == [True]
    for outcome, count in (("received", 6), ("accepted", 3), ("duplicate", 2), ("dead_letter", 1)):
        assert value(samples, "fido_alerts_total", detector="sentinelone", outcome=outcome) == count
