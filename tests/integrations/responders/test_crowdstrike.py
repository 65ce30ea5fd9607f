"""crowdstrike_contain_host against a stand-in for the Falcon OAuth2 and Hosts APIs
(``fake_falcon.py``), a server that never answers, and a port nobody listens on."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from integrations.responders.crowdstrike_contain_host import CrowdStrikeContainHost, fql_string
from integrations.responders.vendor_http import VendorRateLimited
from pipeline.errors import ConfigError, ResponderError
from pipeline.plugins import Context, Impact, Responder, responders
from tests.integrations.responders.fake_falcon import (
    BASE,
    CLIENT_ID,
    SECRET,
    FakeFalcon,
    falcon,
    rate_limited,
)
from tests.integrations.responders.saas import (
    assert_never_told,
    fails_within,
    form,
    refused_url,
    silent_server,
    watching_logs,
)

ENV = "FIDO_TEST_FALCON_SECRET"


@pytest.fixture
async def cs() -> Any:
    fake = FakeFalcon()
    fake.add("LAPTOP-042")
    fake.add("LAPTOP-007")
    yield fake
    await fake.http.aclose()


def build(
    http: httpx.AsyncClient, *, secret: str = SECRET, **changes: Any
) -> CrowdStrikeContainHost:
    values = {"base_url": BASE, "client_id": CLIENT_ID, "client_secret_env": ENV, "timeout": 2}
    options = CrowdStrikeContainHost.Options.model_validate(values | changes)
    return CrowdStrikeContainHost.build(options, Context(http=http, environ={ENV: secret}))


def device(cs: FakeFalcon, hostname: str) -> dict[str, Any]:
    return next(d for d in cs.devices.values() if d["hostname"] == hostname)


def test_registered_with_its_attributes(cs: FakeFalcon) -> None:
    responder = build(cs.http)
    assert responders.get("crowdstrike_contain_host") is CrowdStrikeContainHost
    assert isinstance(responder, Responder)
    assert (responder.target_kind, responder.label, responder.reversible) == (
        "host",
        "contain",
        True,
    )
    assert responder.impact is Impact.high


async def test_contain_finds_the_device_then_contains_it(cs: FakeFalcon) -> None:
    laptop = device(cs, "LAPTOP-042")
    result = await build(cs.http).execute("laptop-042")
    token, query, details, action = cs.recorder.requests
    assert (token.method, str(token.url)) == ("POST", f"{BASE}/oauth2/token")
    assert form(token) == {"client_id": CLIENT_ID, "client_secret": SECRET}
    assert "Authorization" not in token.headers
    assert (query.method, query.url.path) == ("GET", "/devices/queries/devices/v1")
    assert dict(query.url.params) == {"filter": "hostname:'laptop-042'", "limit": "20"}
    assert (details.method, details.url.path) == ("GET", "/devices/entities/devices/v2")
    assert details.url.params.get_list("ids") == [laptop["device_id"]]
    assert (action.method, action.url.path) == ("POST", "/devices/entities/devices-actions/v2")
    assert dict(action.url.params) == {"action_name": "contain"}
    assert json.loads(action.content) == {"ids": [laptop["device_id"]]}
    for request in (query, details, action):
        assert request.headers["Authorization"].startswith("Bearer ")
        assert SECRET not in str(request.headers) + str(request.url)
    assert laptop["status"] == "containment_pending"
    assert result.summary == (
        f"Network-contained LAPTOP-042 (device {laptop['device_id']}) in CrowdStrike Falcon; "
        "it can only reach the Falcon cloud until Undo"
    )
    assert result.undo_data == {
        "device_id": laptop["device_id"],
        "hostname": "LAPTOP-042",
        "changed": True,
    }


async def test_undo_lifts_the_containment(cs: FakeFalcon) -> None:
    responder = build(cs.http)
    laptop = device(cs, "LAPTOP-042")
    result = await responder.execute("LAPTOP-042")
    laptop["status"] = "contained"
    undone = await responder.undo("LAPTOP-042", result.undo_data)
    action = cs.recorder.requests[-1]
    assert dict(action.url.params) == {"action_name": "lift_containment"}
    assert json.loads(action.content) == {"ids": [laptop["device_id"]]}
    assert laptop["status"] == "lift_containment_pending"
    assert undone.summary.startswith("Lifted the network containment of LAPTOP-042")


@pytest.mark.parametrize("status", ["contained", "containment_pending"])
async def test_already_contained_changes_nothing_and_undo_leaves_it(
    cs: FakeFalcon, status: str
) -> None:
    laptop = device(cs, "LAPTOP-042")
    laptop["status"] = status
    responder = build(cs.http)
    result = await responder.execute("LAPTOP-042")
    assert (
        f"was already contained in CrowdStrike Falcon ({status}); nothing changed" in result.summary
    )
    assert result.undo_data["changed"] is False
    undone = await responder.undo("LAPTOP-042", result.undo_data)
    assert undone.summary == "Left LAPTOP-042 contained: it was contained before Fido acted"
    assert not any(r.method == "POST" for r in cs.api_calls())
    assert laptop["status"] == status


async def test_undo_after_someone_else_lifted_it(cs: FakeFalcon) -> None:
    laptop = device(cs, "LAPTOP-042")
    undo_data = {"device_id": laptop["device_id"], "hostname": "LAPTOP-042", "changed": True}
    result = await build(cs.http).undo("LAPTOP-042", undo_data)
    assert result.summary == "LAPTOP-042 was no longer contained; nothing to undo"


async def test_undo_of_a_device_falcon_no_longer_has(cs: FakeFalcon) -> None:
    undo_data = {"device_id": "f" * 32, "hostname": "GONE", "changed": True}
    with pytest.raises(ResponderError, match=f"device {'f' * 32} is no longer in Falcon"):
        await build(cs.http).undo("GONE", undo_data)


async def test_unknown_host_is_no_such_host(cs: FakeFalcon) -> None:
    with pytest.raises(ResponderError, match="no such host in CrowdStrike Falcon"):
        await build(cs.http).execute("ghost-pc")
    assert not any(r.method == "POST" for r in cs.api_calls())


async def test_an_fqdn_falls_back_to_its_short_name(cs: FakeFalcon) -> None:
    await build(cs.http).execute("laptop-042.corp.example")
    filters = [
        r.url.params["filter"] for r in cs.api_calls() if r.url.path.endswith("queries/devices/v1")
    ]
    assert filters == ["hostname:'laptop-042.corp.example'", "hostname:'laptop-042'"]
    assert device(cs, "LAPTOP-042")["status"] == "containment_pending"


async def test_the_most_recently_seen_of_namesakes_is_contained(cs: FakeFalcon) -> None:
    stale = device(cs, "LAPTOP-042")
    fresh_id = cs.add("LAPTOP-042", last_seen="2024-06-01T08:00:00Z")
    result = await build(cs.http).execute("LAPTOP-042")
    assert result.undo_data["device_id"] == fresh_id and stale["status"] == "normal"


async def test_a_device_whose_name_differs_is_never_used(cs: FakeFalcon) -> None:
    other = device(cs, "LAPTOP-007")["device_id"]
    responder = build(cs.http)
    await responder.tokens.get(doing="warm up")
    cs.recorder.plan(falcon(200, [other]))  # a query that matched too much
    with pytest.raises(ResponderError, match="no such host"):
        await responder.execute("LAPTOP-042")
    assert device(cs, "LAPTOP-007")["status"] == "normal"


@pytest.mark.parametrize(
    ("target", "fql"),
    [
        ("o'brien-pc", r"hostname:'o\'brien-pc'"),
        ("LAPTOP-042',hostname:'LAPTOP-007", r"hostname:'LAPTOP-042\',hostname:\'LAPTOP-007'"),
        ("back\\slash", r"hostname:'back\\slash'"),
    ],
)
async def test_quotes_stay_inside_the_fql_string(cs: FakeFalcon, target: str, fql: str) -> None:
    cs.add("o'brien-pc")
    cs.add("back\\slash")
    result = None
    try:
        result = await build(cs.http).execute(target)
    except ResponderError as exc:
        assert "no such host" in str(exc)
    query = next(r for r in cs.api_calls() if r.url.path.endswith("queries/devices/v1"))
    assert query.url.params["filter"] == fql
    assert device(cs, "LAPTOP-007")["status"] == "normal"  # never reached by the injection
    if target in ("o'brien-pc", "back\\slash"):
        assert result is not None and result.undo_data["hostname"] == target


def test_fql_string_escapes_backslash_then_quote() -> None:
    assert fql_string("a'b\\c") == "'a\\'b\\\\c'"


@pytest.mark.parametrize("target", ["*", "LAPTOP-*", "laptop\n042", "lap top", "", "a\x7fb"])
async def test_wildcards_and_unsafe_targets_are_refused(cs: FakeFalcon, target: str) -> None:
    with pytest.raises(ResponderError, match="Refused to contain"):
        await build(cs.http).execute(target)
    assert build(cs.http).plan(target).startswith("Refused to contain")
    assert cs.recorder.requests == []


async def test_refused_api_client(cs: FakeFalcon) -> None:
    with pytest.raises(ResponderError) as caught:
        await build(cs.http, secret="wrong").execute("LAPTOP-042")
    assert str(caught.value) == (
        "Could not contain LAPTOP-042 in CrowdStrike Falcon: CrowdStrike Falcon refused Fido's "
        "API client (HTTP 403: 403: Failed to issue access token - Not Authorized); check "
        f"client_id and the secret in {ENV}"
    )


async def test_missing_scope_is_denied(cs: FakeFalcon) -> None:
    cs.forbidden = True
    with pytest.raises(
        ResponderError, match=r"denied it \(HTTP 403: 403: access denied, authorization failed\)"
    ):
        await build(cs.http).execute("LAPTOP-042")


async def test_a_revoked_token_is_renewed_once(cs: FakeFalcon) -> None:
    responder = build(cs.http)
    await responder.execute("LAPTOP-007")
    cs.tokens.clear()
    await responder.execute("LAPTOP-042")
    assert len(cs.recorder.calls("POST", "/oauth2/token")) == 2


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            falcon(500, [], (500, "Internal Server Error")),
            r"failed \(HTTP 500: 500: Internal Server Error\)",
        ),
        (falcon(200, None, (400, "bad query")), r"Falcon said 400: bad query"),
        (httpx.Response(200, content=b"<html>"), r"without the JSON it documents"),
    ],
)
async def test_falcon_failures_are_clear_errors(
    cs: FakeFalcon, answer: httpx.Response, match: str
) -> None:
    responder = build(cs.http)
    await responder.tokens.get(doing="warm up")
    cs.recorder.plan(answer)
    with pytest.raises(ResponderError, match=match):
        await responder.execute("LAPTOP-042")
    assert device(cs, "LAPTOP-042")["status"] == "normal"


async def test_rate_limit_says_when_to_retry(cs: FakeFalcon) -> None:
    responder = build(cs.http)
    await responder.tokens.get(doing="warm up")
    cs.recorder.plan(rate_limited())
    with pytest.raises(
        VendorRateLimited, match="CrowdStrike Falcon is rate limiting Fido"
    ) as caught:
        await responder.execute("LAPTOP-042")
    assert caught.value.retry_after is not None and 10 <= caught.value.retry_after <= 15
    cs.recorder.plan(rate_limited(**{"Retry-After": "3"}))
    with pytest.raises(VendorRateLimited, match="retry after 3 s"):
        await responder.execute("LAPTOP-042")


async def test_hang_fails_within_the_timeout() -> None:
    with silent_server() as url:
        async with httpx.AsyncClient() as http:
            responder = build(http, base_url=url, timeout=0.3)
            await fails_within(
                responder.execute("LAPTOP-042"),
                2,
                match="CrowdStrike Falcon did not answer within 0.3 s",
            )


async def test_connection_refused() -> None:
    async with httpx.AsyncClient() as http:
        responder = build(http, base_url=refused_url())
        await fails_within(
            responder.execute("LAPTOP-042"),
            5,
            match="could not connect to CrowdStrike Falcon at 127.0.0.1",
        )


@pytest.mark.parametrize(
    "undo_data",
    [
        {},
        {"device_id": "123", "changed": True},
        {"device_id": "a" * 32},
        {"device_id": "a" * 32, "changed": 1},
    ],
)
async def test_undo_with_bad_undo_data_is_refused(
    cs: FakeFalcon, undo_data: dict[str, Any]
) -> None:
    with pytest.raises(ResponderError, match="Cannot undo containing LAPTOP-042: the undo data"):
        await build(cs.http).undo("LAPTOP-042", undo_data)
    assert cs.recorder.requests == []


def test_plan(cs: FakeFalcon) -> None:
    assert build(cs.http).plan("LAPTOP-042") == (
        "Network-contain LAPTOP-042 in CrowdStrike Falcon — it can only reach the Falcon cloud "
        "until Undo"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"client_secret": SECRET},
        {"client_id": "not-hex"},
        {"base_url": "http://api.crowdstrike.example"},
        {"client_secret_env": ""},
        {"timeout": "soon"},
    ],
)
def test_options_refuse_unknown_keys_and_bad_values(changes: dict[str, Any]) -> None:
    values = {"client_id": CLIENT_ID, "client_secret_env": ENV}
    assert (
        CrowdStrikeContainHost.Options.model_validate(values).base_url
        == "https://api.crowdstrike.com"
    )
    with pytest.raises(ValidationError):
        CrowdStrikeContainHost.Options.model_validate(values | changes)


def test_build_reads_the_secret_by_name(cs: FakeFalcon) -> None:
    options = CrowdStrikeContainHost.Options(client_id=CLIENT_ID, client_secret_env="NOPE")
    with pytest.raises(ConfigError, match="NOPE is not set"):
        CrowdStrikeContainHost.build(options, Context(http=cs.http, environ={}))
    assert SECRET not in repr(vars(build(cs.http)))


async def test_secrets_never_reach_messages_or_logs(
    cs: FakeFalcon, caplog: pytest.LogCaptureFixture
) -> None:
    messages: list[str] = []
    with watching_logs(caplog):
        responder = build(cs.http)
        result = await responder.execute("LAPTOP-042")
        device(cs, "LAPTOP-042")["status"] = "contained"
        await responder.undo("LAPTOP-042", result.undo_data)
        token = responder.tokens.current
        echo = falcon(400, [], (400, f"bad token {token} / {SECRET}"))
        for answer in (echo, rate_limited(), falcon(500, [], (500, "x"))):
            cs.recorder.plan(answer)
            with pytest.raises(ResponderError) as caught:
                await responder.execute("LAPTOP-007")
            messages.append(str(caught.value))
        with pytest.raises(ResponderError) as caught:
            await build(cs.http, secret="wrong-" + SECRET).execute("LAPTOP-007")
        messages.append(str(caught.value))
    assert messages[0].count("***") == 2
    assert_never_told([SECRET, token], *messages, caplog.text)
