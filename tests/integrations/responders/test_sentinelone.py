"""sentinelone_isolate_host against a stand-in for the SentinelOne Management API
(``fake_s1.py``), a server that never answers, and a port nobody listens on."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from integrations.responders.sentinelone_isolate_host import SentinelOneIsolateHost
from integrations.responders.vendor_http import VendorRateLimited
from pipeline.errors import ConfigError, ResponderError
from pipeline.plugins import Context, Impact, Responder, responders
from tests.integrations.responders.fake_s1 import BASE, TOKEN, FakeS1, s1_error
from tests.integrations.responders.saas import (
    assert_never_told,
    assert_secret_only_in,
    fails_within,
    json_response,
    refused_url,
    silent_server,
    watching_logs,
)

ENV = "FIDO_TEST_S1_TOKEN"


@pytest.fixture
async def s1() -> Any:
    fake = FakeS1()
    fake.add("LAPTOP-042")
    fake.add("LAPTOP-007")
    yield fake
    await fake.http.aclose()


def build(http: httpx.AsyncClient, *, token: str = TOKEN, **changes: Any) -> SentinelOneIsolateHost:
    values = {"base_url": BASE, "api_token_env": ENV, "timeout": 2}
    options = SentinelOneIsolateHost.Options.model_validate(values | changes)
    return SentinelOneIsolateHost.build(options, Context(http=http, environ={ENV: token}))


def test_registered_with_its_attributes(s1: FakeS1) -> None:
    responder = build(s1.http)
    assert responders.get("sentinelone_isolate_host") is SentinelOneIsolateHost
    assert isinstance(responder, Responder)
    assert (responder.target_kind, responder.reversible, responder.impact) == (
        "host",
        True,
        Impact.high,
    )


async def test_isolate_finds_the_agent_then_disconnects_it_by_id(s1: FakeS1) -> None:
    laptop = s1.by_name("LAPTOP-042")
    result = await build(s1.http).execute("laptop-042")
    find, act = s1.recorder.requests
    assert (find.method, find.url.path) == ("GET", "/web/api/v2.1/agents")
    assert dict(find.url.params) == {"computerName": "laptop-042", "limit": "20"}
    assert (act.method, act.url.path) == ("POST", "/web/api/v2.1/agents/actions/disconnect")
    assert json.loads(act.content) == {"filter": {"ids": [laptop["id"]]}}
    assert act.headers["Content-Type"] == "application/json"
    for request in (find, act):
        assert_secret_only_in(request, TOKEN, "Authorization", f"ApiToken {TOKEN}")
    assert laptop["networkStatus"] == "disconnecting"
    assert s1.by_name("LAPTOP-007")["networkStatus"] == "connected"
    assert result.summary == (
        f"Disconnected LAPTOP-042 (agent {laptop['id']}) from the network with SentinelOne; "
        "it can only reach the console until Undo"
    )
    assert result.undo_data == {
        "agent_id": laptop["id"],
        "computer_name": "LAPTOP-042",
        "changed": True,
    }


async def test_undo_reconnects(s1: FakeS1) -> None:
    responder = build(s1.http)
    laptop = s1.by_name("LAPTOP-042")
    result = await responder.execute("LAPTOP-042")
    laptop["networkStatus"] = "disconnected"
    undone = await responder.undo("LAPTOP-042", result.undo_data)
    find, act = s1.recorder.requests[-2:]
    assert dict(find.url.params) == {"ids": laptop["id"], "limit": "20"}
    assert act.url.path == "/web/api/v2.1/agents/actions/connect"
    assert json.loads(act.content) == {"filter": {"ids": [laptop["id"]]}}
    assert laptop["networkStatus"] == "connecting"
    assert (
        undone.summary
        == f"Reconnected LAPTOP-042 (agent {laptop['id']}) to the network with SentinelOne"
    )


@pytest.mark.parametrize("status", ["disconnected", "disconnecting"])
async def test_already_isolated_changes_nothing_and_undo_leaves_it(s1: FakeS1, status: str) -> None:
    s1.by_name("LAPTOP-042")["networkStatus"] = status
    responder = build(s1.http)
    result = await responder.execute("LAPTOP-042")
    assert (
        "was already disconnected from the network in SentinelOne; nothing changed"
        in result.summary
    )
    undone = await responder.undo("LAPTOP-042", result.undo_data)
    assert undone.summary == "Left LAPTOP-042 disconnected: it was disconnected before Fido acted"
    assert [r.method for r in s1.recorder.requests] == ["GET"]


async def test_undo_after_someone_else_reconnected(s1: FakeS1) -> None:
    laptop = s1.by_name("LAPTOP-042")
    undo_data = {"agent_id": laptop["id"], "computer_name": "LAPTOP-042", "changed": True}
    result = await build(s1.http).undo("LAPTOP-042", undo_data)
    assert result.summary == "LAPTOP-042 was already connected to the network; nothing to undo"


async def test_unknown_host_is_no_such_host(s1: FakeS1) -> None:
    with pytest.raises(ResponderError, match="no such host in SentinelOne"):
        await build(s1.http).execute("ghost-pc.corp.example")
    names = [r.url.params["computerName"] for r in s1.recorder.requests]
    assert names == ["ghost-pc.corp.example", "ghost-pc"]  # the FQDN, then its short name


async def test_undo_of_an_agent_no_longer_there(s1: FakeS1) -> None:
    undo_data = {"agent_id": "42", "computer_name": "GONE", "changed": True}
    with pytest.raises(ResponderError, match="agent 42 is no longer in SentinelOne"):
        await build(s1.http).undo("GONE", undo_data)


async def test_the_most_recently_active_namesake_is_isolated(s1: FakeS1) -> None:
    fresh = s1.add("LAPTOP-042", last="2024-06-01T08:00:00.000000Z")
    result = await build(s1.http).execute("LAPTOP-042")
    assert result.undo_data["agent_id"] == fresh["id"]


async def test_an_agent_whose_name_differs_is_never_used(s1: FakeS1) -> None:
    other = s1.by_name("LAPTOP-007")
    s1.recorder.plan(json_response(200, {"data": [other], "pagination": {}}))  # too loose
    with pytest.raises(ResponderError, match="no such host"):
        await build(s1.http).execute("LAPTOP-042")
    assert other["networkStatus"] == "connected"


async def test_an_odd_name_is_only_a_query_value(s1: FakeS1) -> None:
    s1.add("o'brien&pc=1")
    result = await build(s1.http).execute("o'brien&pc=1")
    assert s1.recorder.requests[0].url.params["computerName"] == "o'brien&pc=1"
    assert result.undo_data["computer_name"] == "o'brien&pc=1"


def test_the_confirm_dialog_says_what_isolation_does(s1: FakeS1) -> None:
    responder = build(s1.http)
    assert responder.plan("laptop-042") == (
        "Disconnect laptop-042 from the network with SentinelOne — it can only reach the "
        "SentinelOne console until Undo"
    )
    assert responder.plan("laptop-042\nrm").startswith("Refused to isolate")


@pytest.mark.parametrize("target", ["laptop\n042", "lap top", "", "x\u2028y"])
async def test_unsafe_targets_are_refused(s1: FakeS1, target: str) -> None:
    with pytest.raises(ResponderError, match="Refused to isolate"):
        await build(s1.http).execute(target)
    assert build(s1.http).plan(target).startswith("Refused to isolate")
    assert s1.recorder.requests == []


async def test_affected_zero_is_an_error(s1: FakeS1) -> None:
    responder = build(s1.http)
    find = await s1.http.get(
        f"{BASE}/web/api/v2.1/agents",
        params={"computerName": "LAPTOP-042"},
        headers={"Authorization": f"ApiToken {TOKEN}"},
    )
    s1.recorder.plan(json_response(200, find.json()), json_response(200, {"data": {"affected": 0}}))
    with pytest.raises(ResponderError, match="SentinelOne affected 0 agents, not 1"):
        await responder.execute("LAPTOP-042")


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            s1_error(401, 4010010, "Authentication Failed"),
            r"refused Fido's credentials \(HTTP 401: Authentication Failed\); check the API "
            r"token in FIDO_TEST_S1_TOKEN",
        ),
        (
            s1_error(403, 4030010, "Forbidden", "Insufficient permissions"),
            r"denied it \(HTTP 403: Forbidden: Insufficient permissions\)",
        ),
        (s1_error(500, 5000010, "Server Error"), r"SentinelOne failed \(HTTP 500: Server Error\)"),
        (json_response(200, {"errors": []}), "answered without data"),
    ],
)
async def test_s1_failures_are_clear_errors(s1: FakeS1, answer: httpx.Response, match: str) -> None:
    s1.recorder.plan(answer)
    with pytest.raises(ResponderError, match=match) as caught:
        await build(s1.http).execute("LAPTOP-042")
    assert TOKEN not in str(caught.value)
    assert s1.by_name("LAPTOP-042")["networkStatus"] == "connected"


async def test_a_wrong_token_is_authentication_failed(s1: FakeS1) -> None:
    with pytest.raises(ResponderError, match="Authentication Failed"):
        await build(s1.http, token="wrong").execute("LAPTOP-042")


async def test_rate_limit_says_when_to_retry(s1: FakeS1) -> None:
    limited = s1_error(429, 4290010, "Too Many Requests")
    limited.headers["Retry-After"] = "9"
    s1.recorder.plan(limited)
    with pytest.raises(
        VendorRateLimited, match=r"HTTP 429: Too Many Requests\); retry after 9 s"
    ) as caught:
        await build(s1.http).execute("LAPTOP-042")
    assert caught.value.retry_after == 9


async def test_hang_fails_within_the_timeout() -> None:
    with silent_server() as url:
        async with httpx.AsyncClient() as http:
            responder = build(http, base_url=url, timeout=0.3)
            await fails_within(
                responder.execute("LAPTOP-042"), 2, match="SentinelOne did not answer within 0.3 s"
            )


async def test_connection_refused() -> None:
    async with httpx.AsyncClient() as http:
        responder = build(http, base_url=refused_url())
        await fails_within(
            responder.execute("LAPTOP-042"),
            5,
            match="could not connect to SentinelOne at 127.0.0.1",
        )


@pytest.mark.parametrize(
    "undo_data",
    [
        {},
        {"agent_id": "12ab", "changed": True},
        {"agent_id": "12"},
        {"agent_id": 12, "changed": True},
    ],
)
async def test_undo_with_bad_undo_data_is_refused(s1: FakeS1, undo_data: dict[str, Any]) -> None:
    with pytest.raises(ResponderError, match="Cannot undo isolating LAPTOP-042: the undo data"):
        await build(s1.http).undo("LAPTOP-042", undo_data)
    assert s1.recorder.requests == []


@pytest.mark.parametrize(
    "changes",
    [
        {"api_token": TOKEN},
        {"base_url": "http://s1.example"},
        {"base_url": None},
        {"api_token_env": "A B"},
    ],
)
def test_options_refuse_unknown_keys_and_bad_values(changes: dict[str, Any]) -> None:
    values = {"base_url": BASE, "api_token_env": ENV}
    SentinelOneIsolateHost.Options.model_validate(values)
    with pytest.raises(ValidationError):
        SentinelOneIsolateHost.Options.model_validate(values | changes)


def test_build_reads_the_token_by_name(s1: FakeS1) -> None:
    options = SentinelOneIsolateHost.Options(base_url=BASE, api_token_env="NOPE")
    with pytest.raises(ConfigError, match="NOPE is not set"):
        SentinelOneIsolateHost.build(options, Context(http=s1.http, environ={}))
    assert TOKEN not in repr(vars(build(s1.http)))


async def test_the_token_never_reaches_messages_or_logs(
    s1: FakeS1, caplog: pytest.LogCaptureFixture
) -> None:
    messages: list[str] = []
    with watching_logs(caplog):
        responder = build(s1.http)
        result = await responder.execute("LAPTOP-042")
        s1.by_name("LAPTOP-042")["networkStatus"] = "disconnected"
        await responder.undo("LAPTOP-042", result.undo_data)
        for answer in (
            s1_error(400, 4000010, "Validation Error", f"token {TOKEN}"),
            s1_error(500, 1, "x"),
        ):
            s1.recorder.plan(answer)
            with pytest.raises(ResponderError) as caught:
                await responder.execute("LAPTOP-007")
            messages.append(str(caught.value))
    assert "***" in messages[0]
    assert_never_told([TOKEN], *messages, caplog.text)
