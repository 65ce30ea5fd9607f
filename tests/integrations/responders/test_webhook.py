"""webhook against a receiver that checks the signature as the module docstring tells
receivers to, a server that never answers, and a port nobody listens on."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.detectors.generic import GenericDetector
from integrations.responders.vendor_http import VendorRateLimited
from integrations.responders.webhook import WebhookResponder, signature
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.errors import ConfigError, ResponderError
from pipeline.ingest import ingest
from pipeline.plugins import Context, Impact, Responder, acting_for, responders
from pipeline.policy import ActionPolicy, Policy
from tests.integrations.responders.saas import (
    Recorder,
    assert_never_told,
    fails_within,
    refused_url,
    silent_server,
    watching_logs,
)
from tests.pipeline.fakes import DirectoryEnricher

ENV = "FIDO_TEST_WEBHOOK_SECRET"
SECRET = "whsec_5f2b1c0d9e8a7b6c5d4e3f2a1b0c9d8e"
URL = "https://hooks.receiver.test/services/T000/B000/PathToken123"
UNDO_URL = "https://hooks.receiver.test/undo"
NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


class Receiver:
    """Accepts a delivery only when its signature is right, as a receiver should."""

    def __init__(self) -> None:
        self.recorder = Recorder(self._handle)
        self.http = self.recorder.http
        self.accepted: list[dict[str, Any]] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        expected = (
            "sha256=" + hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(request.headers.get("X-Fido-Signature", ""), expected):
            return httpx.Response(401, text="bad signature")
        self.accepted.append(json.loads(request.content))
        return httpx.Response(202, json={"status": "queued"})


@pytest.fixture
async def receiver() -> Any:
    fake = Receiver()
    yield fake
    await fake.http.aclose()


def build(http: httpx.AsyncClient, *, secret: str = SECRET, **changes: Any) -> WebhookResponder:
    values = {"url": URL, "secret_env": ENV, "timeout": 2} | changes
    options = WebhookResponder.Options.model_validate(values)
    return WebhookResponder(options, http=http, secret=SecretStr(secret), now=lambda: NOW)


def test_registered_and_shaped_by_its_options(receiver: Receiver) -> None:
    plain = build(receiver.http)
    assert responders.get("webhook") is WebhookResponder
    assert isinstance(plain, Responder)
    assert (plain.target_kind, plain.label, plain.reversible, plain.impact) == (
        "user",
        "contain",
        False,
        Impact.high,
    )
    host = build(
        receiver.http, target_kind="host", label="quarantine", impact="low", undo_url=UNDO_URL
    )
    assert (host.target_kind, host.label, host.reversible, host.impact) == (
        "host",
        "quarantine",
        True,
        Impact.low,
    )
    assert build(receiver.http, reversible=True).reversible is True


async def test_posts_a_signed_json_body(receiver: Receiver) -> None:
    with acting_for(42):  # as act runs it for incident 42
        result = await build(receiver.http).execute("alice")
    (request,) = receiver.recorder.requests
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.content == (
        b'{"action":"contain","incident":42,"sent_at":"2024-05-01T12:00:00Z","target":"alice",'
        b'"undo":false}'
    )
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Fido-Signature"] == signature(SECRET, request.content)
    assert request.headers["X-Fido-Timestamp"] == "1714564800"
    assert SECRET not in str(request.headers) and SECRET.encode() not in request.content
    assert receiver.accepted == [
        {
            "action": "contain",
            "incident": 42,
            "sent_at": "2024-05-01T12:00:00Z",
            "target": "alice",
            "undo": False,
        }
    ]
    assert result.summary == "Sent 'contain' for alice to hooks.receiver.test (HTTP 202)"
    assert result.undo_data == {"delivered": True, "incident": 42, "action": "contain"}


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    expected = hmac.new(b"key", b"The quick brown fox", hashlib.sha256).hexdigest()
    assert signature("key", b"The quick brown fox") == f"sha256={expected}"


async def test_without_an_incident_it_is_null(receiver: Receiver) -> None:
    await build(receiver.http, action="disable-user").execute("bob")
    assert (
        receiver.accepted[0]["incident"] is None
        and receiver.accepted[0]["action"] == "disable-user"
    )


async def test_undo_posts_to_the_undo_url(receiver: Receiver) -> None:
    responder = build(receiver.http, undo_url=UNDO_URL)
    with acting_for(7):
        done = await responder.execute("alice")
    undone = await responder.undo("alice", done.undo_data)
    last = receiver.recorder.requests[-1]
    assert str(last.url) == UNDO_URL
    assert last.headers["X-Fido-Signature"] == signature(SECRET, last.content)
    assert receiver.accepted[-1] == {
        "action": "contain",
        "incident": 7,
        "sent_at": "2024-05-01T12:00:00Z",
        "target": "alice",
        "undo": True,
    }
    assert (
        undone.summary == "Sent the undo of 'contain' for alice to hooks.receiver.test (HTTP 202)"
    )


async def test_reversible_without_undo_url_posts_undo_to_the_url(receiver: Receiver) -> None:
    responder = build(receiver.http, reversible=True)
    await responder.undo("alice", {"delivered": True, "incident": None})
    assert str(receiver.recorder.requests[-1].url) == URL and receiver.accepted[-1]["undo"] is True


async def test_not_reversible_unless_configured(receiver: Receiver) -> None:
    with pytest.raises(ResponderError, match="cannot be undone: no undo_url is configured"):
        await build(receiver.http).undo("alice", {"delivered": True})
    assert "cannot be undone" in build(receiver.http).plan("alice")
    assert receiver.recorder.requests == []


@pytest.mark.parametrize(
    "undo_data",
    [
        {},
        {"delivered": "yes"},
        {"delivered": True, "incident": "42"},
        {"delivered": True, "incident": True},
    ],
)
async def test_undo_with_bad_undo_data_is_refused(
    receiver: Receiver, undo_data: dict[str, Any]
) -> None:
    with pytest.raises(ResponderError, match="Cannot undo the webhook action on alice"):
        await build(receiver.http, undo_url=UNDO_URL).undo("alice", undo_data)
    assert receiver.recorder.requests == []


async def test_a_wrong_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    with pytest.raises(ResponderError) as caught:
        await build(receiver.http, secret="not-the-secret").execute("alice")
    assert str(caught.value) == (
        "Could not send 'contain' for alice: the webhook at hooks.receiver.test refused Fido's "
        f"credentials (HTTP 401: bad signature); check the receiver's secret (in {ENV})"
    )


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (httpx.Response(400, text="x" * 500), r"rejected the request \(HTTP 400: x{199}…\)$"),
        (httpx.Response(403, text="no"), r"denied it \(HTTP 403: no\)"),
        (
            httpx.Response(404, text="<html>\n<h1>Not\tFound</h1>\n</html>"),
            r"\(HTTP 404: <html> <h1>Not Found</h1> </html>\)",
        ),
        (httpx.Response(503, text=""), r"failed \(HTTP 503\); try again later"),
        (
            httpx.Response(307, headers={"Location": "https://elsewhere.test/"}),
            r"redirect \(HTTP 307\)",
        ),
    ],
)
async def test_failures_name_the_status_and_a_bounded_excerpt(
    receiver: Receiver, answer: httpx.Response, match: str
) -> None:
    receiver.recorder.plan(answer)
    with pytest.raises(ResponderError, match=match) as caught:
        await build(receiver.http).execute("alice")
    assert "PathToken123" not in str(caught.value)  # the URL's path may be a secret
    assert len(receiver.recorder.requests) == 1  # no redirect followed


async def test_rate_limit_says_when_to_retry(receiver: Receiver) -> None:
    receiver.recorder.plan(
        httpx.Response(
            429, text="slow down", headers={"Retry-After": "Wed, 01 May 2099 12:00:00 GMT"}
        )
    )
    with pytest.raises(
        VendorRateLimited, match=r"rate limiting Fido \(HTTP 429: slow down\); retry after"
    ) as caught:
        await build(receiver.http).execute("alice")
    assert caught.value.retry_after is not None and caught.value.retry_after > 3600


async def test_hang_fails_within_the_timeout() -> None:
    with silent_server() as url:
        async with httpx.AsyncClient() as http:
            responder = build(http, url=f"{url}/hook", timeout=0.3)
            await fails_within(
                responder.execute("alice"),
                2,
                match="the webhook at 127.0.0.1 did not answer within 0.3 s",
            )


async def test_connection_refused() -> None:
    async with httpx.AsyncClient() as http:
        responder = build(http, url=f"{refused_url()}/hook")
        await fails_within(
            responder.execute("alice"), 5, match="could not connect to the webhook at 127.0.0.1"
        )


async def test_odd_targets_are_json_escaped_and_control_characters_refused(
    receiver: Receiver,
) -> None:
    await build(receiver.http).execute('o"brien\\x')
    assert receiver.accepted[0]["target"] == 'o"brien\\x'
    for target in ("alice\n", "al\x1bice", "a b"):
        with pytest.raises(ResponderError, match="Refused to send 'contain' for"):
            await build(receiver.http).execute(target)
    assert len(receiver.recorder.requests) == 1


def test_plan(receiver: Receiver) -> None:
    assert build(receiver.http, undo_url=UNDO_URL).plan(
        "alice", {"display_name": "Alice Liddell"}
    ) == (
        "Send 'contain' for alice (Alice Liddell) to hooks.receiver.test (signed webhook) — "
        "Undo sends it again with undo: true"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"secret": SECRET},
        {"url": "http://hooks.example/x"},
        {"url": "not a url"},
        {"undo_url": UNDO_URL, "reversible": False},
        {"action": "Contain Now"},
        {"target_kind": "group"},
        {"impact": "medium"},
        {"secret_env": None},
        {"timeout": 0},
    ],
)
def test_options_refuse_unknown_keys_and_bad_values(changes: dict[str, Any]) -> None:
    values = {"url": URL, "secret_env": ENV}
    WebhookResponder.Options.model_validate(values)
    with pytest.raises(ValidationError):
        WebhookResponder.Options.model_validate(values | changes)


async def test_build_reads_the_secret_by_name() -> None:
    options = WebhookResponder.Options(url=URL, secret_env="NOPE")
    with pytest.raises(ConfigError, match="NOPE is not set"):
        WebhookResponder.build(options, Context(environ={}))
    built = WebhookResponder.build(
        WebhookResponder.Options(url=URL, secret_env=ENV), Context(environ={ENV: SECRET})
    )
    assert isinstance(built.api.http, httpx.AsyncClient)  # its own client when none is shared
    assert SECRET not in repr(vars(built))
    await built.api.http.aclose()


async def test_the_secret_never_reaches_messages_or_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    messages: list[str] = []
    with watching_logs(caplog):
        responder = build(receiver.http, undo_url=UNDO_URL)
        done = await responder.execute("alice")
        await responder.undo("alice", done.undo_data)
        for answer in (
            httpx.Response(400, text=f"bad secret {SECRET}"),
            httpx.Response(500, text=SECRET),
        ):
            receiver.recorder.plan(answer)
            with pytest.raises(ResponderError) as caught:
                await responder.execute("alice")
            messages.append(str(caught.value))
    assert "***" in messages[0] and "***" in messages[1]
    assert_never_told([SECRET], *messages, caplog.text)


async def test_an_approved_action_names_its_incident(receiver: Receiver, db: Database) -> None:
    """Through the pipeline, as ``fido serve`` runs it: the body carries the incident."""
    engine = Engine(
        db=db,
        policy=Policy(actions=[ActionPolicy(responder="webhook", two_person=False)]),
        enrichers=[DirectoryEnricher({"alice": {}})],
        responders={"webhook": build(receiver.http)},
        approvers=["UAPPROVER"],
    )
    body = {"id": "w1", "title": "Credential dump", "severity": "critical", "user": "alice"}
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(body).encode())
    await engine.drain()
    incident = await engine.incidents.require(1)
    action = await engine.incidents.approve(
        incident_id=1, responder="webhook", target="alice", actor="UAPPROVER"
    )
    assert action.status == "succeeded" and incident.id == 1
    assert receiver.accepted[0]["incident"] == 1
