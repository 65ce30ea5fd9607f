"""entra_revoke_sessions and entra_disable_user against a stand-in for the Microsoft
identity platform and Microsoft Graph (``fake_graph.py``), a server that never answers, and
a port nobody listens on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from integrations.responders.entra_disable_user import EntraDisableUser
from integrations.responders.entra_revoke_sessions import EntraRevokeSessions
from integrations.responders.vendor_http import VendorRateLimited
from pipeline.errors import ConfigError, ResponderError
from pipeline.plugins import Context, Impact, Responder, responders
from tests.integrations.responders.fake_graph import (
    CLIENT_ID,
    GRAPH,
    LOGIN,
    SCOPE,
    SECRET,
    TENANT,
    FakeGraph,
    graph_error,
    throttled,
)
from tests.integrations.responders.saas import (
    assert_never_told,
    fails_within,
    form,
    refused_url,
    silent_server,
    watching_logs,
)

ENV = "FIDO_TEST_ENTRA_SECRET"
ADELE = "adele@contoso.test"
SELECT = b"?$select=id,displayName,userPrincipalName,accountEnabled"
Built = EntraRevokeSessions | EntraDisableUser


@pytest.fixture
async def graph() -> Any:
    fake = FakeGraph()
    fake.add(ADELE, "Adele Vance")
    yield fake
    await fake.http.aclose()


def build(kind: type[Built], http: httpx.AsyncClient, **changes: Any) -> Any:
    """The responder as the project builds it: Options validated, then ``build``."""
    values = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret_env": ENV,
        "login_url": LOGIN,
        "graph_url": GRAPH,
        "timeout": 2,
    }
    options = kind.Options.model_validate(values | changes)
    return kind.build(options, Context(http=http, environ={ENV: SECRET}))  # type: ignore[arg-type]


def adele_id(graph: FakeGraph) -> str:
    return next(iter(graph.users))


def test_registered_with_their_attributes(graph: FakeGraph) -> None:
    revoke, disable = build(EntraRevokeSessions, graph.http), build(EntraDisableUser, graph.http)
    assert responders.get("entra_revoke_sessions") is EntraRevokeSessions
    assert responders.get("entra_disable_user") is EntraDisableUser
    assert isinstance(revoke, Responder) and isinstance(disable, Responder)
    assert (revoke.reversible, revoke.impact) == (False, Impact.low)
    assert (disable.reversible, disable.impact, disable.label) == (True, Impact.high, "disable")


async def test_revoke_gets_a_token_finds_the_user_and_revokes(graph: FakeGraph) -> None:
    result = await build(EntraRevokeSessions, graph.http).execute(ADELE)
    token, get, post = graph.recorder.requests
    assert (token.method, str(token.url)) == ("POST", f"{LOGIN}/{TENANT}/oauth2/v2.0/token")
    assert form(token) == {
        "client_id": CLIENT_ID,
        "scope": SCOPE,
        "client_secret": SECRET,
        "grant_type": "client_credentials",
    }
    assert "Authorization" not in token.headers
    assert get.method == "GET" and get.url.raw_path == b"/v1.0/users/adele@contoso.test" + SELECT
    assert get.headers["Authorization"].startswith("Bearer eyJ0eXAi")
    user_id = adele_id(graph)
    assert (post.method, post.url.path) == ("POST", f"/v1.0/users/{user_id}/revokeSignInSessions")
    assert post.content == b"" and post.headers["Authorization"] == get.headers["Authorization"]
    assert SECRET not in str(get.headers) + str(post.headers)
    assert result.summary.startswith(
        f"Revoked every Entra ID sign-in session of {ADELE} (Adele Vance)"
    )
    assert result.undo_data == {"user_id": user_id, "upn": ADELE}
    with pytest.raises(ResponderError, match="cannot be undone"):
        await build(EntraRevokeSessions, graph.http).undo(ADELE, result.undo_data)


async def test_the_token_is_reused_and_renewed_when_graph_refuses_it(graph: FakeGraph) -> None:
    responder = build(EntraRevokeSessions, graph.http)
    await responder.execute(ADELE)
    await responder.execute(ADELE)
    token_calls = [r for r in graph.recorder.requests if r.url.host == "login.entra.test"]
    assert len(token_calls) == 1
    graph.tokens.clear()  # revoked early
    await responder.execute(ADELE)
    token_calls = [r for r in graph.recorder.requests if r.url.host == "login.entra.test"]
    assert len(token_calls) == 2


async def test_disable_patches_account_enabled_and_undo_enables(graph: FakeGraph) -> None:
    responder = build(EntraDisableUser, graph.http)
    user_id = adele_id(graph)
    result = await responder.execute(ADELE)
    patch = graph.recorder.requests[-1]
    assert (patch.method, patch.url.path) == ("PATCH", f"/v1.0/users/{user_id}")
    assert patch.content == b'{"accountEnabled":false}'
    assert patch.headers["Content-Type"] == "application/json"
    assert graph.users[user_id]["accountEnabled"] is False
    assert result.summary.startswith(
        f"Disabled {ADELE} (Adele Vance) in Entra ID (object {user_id})"
    )
    assert result.undo_data == {"user_id": user_id, "upn": ADELE, "changed": True}
    undone = await responder.undo(ADELE, result.undo_data)
    assert graph.recorder.requests[-1].content == b'{"accountEnabled":true}'
    assert graph.users[user_id]["accountEnabled"] is True
    assert undone.summary == f"Enabled {ADELE} (Adele Vance) in Entra ID again"


async def test_already_disabled_changes_nothing_and_undo_leaves_it(graph: FakeGraph) -> None:
    user_id = adele_id(graph)
    graph.users[user_id]["accountEnabled"] = False
    responder = build(EntraDisableUser, graph.http)
    result = await responder.execute(ADELE)
    assert "was already disabled in Entra ID; nothing changed" in result.summary
    assert not any(r.method == "PATCH" for r in graph.recorder.requests)
    undone = await responder.undo(ADELE, result.undo_data)
    assert "Left adele@contoso.test disabled" in undone.summary
    assert graph.users[user_id]["accountEnabled"] is False


async def test_undo_after_someone_else_enabled_them(graph: FakeGraph) -> None:
    undo_data = {"user_id": adele_id(graph), "upn": ADELE, "changed": True}
    result = await build(EntraDisableUser, graph.http).undo(ADELE, undo_data)
    assert result.summary == f"{ADELE} (Adele Vance) was already enabled in Entra ID"
    assert not any(r.method == "PATCH" for r in graph.recorder.requests)


async def test_unknown_user_is_no_such_user(graph: FakeGraph) -> None:
    for kind in (EntraRevokeSessions, EntraDisableUser):
        with pytest.raises(
            ResponderError, match=r"no such user in Entra ID \(ghost@contoso.test\)"
        ):
            await build(kind, graph.http).execute("ghost@contoso.test")


async def test_undo_of_a_deleted_user(graph: FakeGraph) -> None:
    undo_data = {"user_id": "0b0b0b0b-0000-4000-8000-000000000000", "changed": True}
    with pytest.raises(ResponderError, match="is no longer in Entra ID"):
        await build(EntraDisableUser, graph.http).undo(ADELE, undo_data)


async def test_names_become_upns_or_are_refused(graph: FakeGraph) -> None:
    with pytest.raises(ResponderError, match="needs a user principal name"):
        await build(EntraDisableUser, graph.http).execute("CORP\\adele")
    assert graph.recorder.requests == []
    await build(EntraDisableUser, graph.http, domain="contoso.test").execute("CORP\\adele")
    assert graph.graph_calls()[0].url.raw_path == b"/v1.0/users/adele@contoso.test" + SELECT
    user_id = adele_id(graph)
    await build(EntraRevokeSessions, graph.http).execute(user_id.upper())
    assert graph.graph_calls()[-2].url.raw_path == f"/v1.0/users/{user_id}".encode() + SELECT


async def test_dollar_and_hash_upns_are_addressed_as_documented(graph: FakeGraph) -> None:
    graph.add("$adele@contoso.test", "Dollar Adele")
    graph.add("adele_fabrikam.com#EXT#@contoso.test", "Guest Adele")
    responder = build(EntraRevokeSessions, graph.http)
    await responder.execute("$adele@contoso.test")
    assert graph.graph_calls()[0].url.raw_path == b"/v1.0/users('$adele@contoso.test')" + SELECT
    await responder.execute("adele_fabrikam.com#EXT#@contoso.test")
    assert graph.graph_calls()[2].url.raw_path == (
        b"/v1.0/users/adele_fabrikam.com%23EXT%23@contoso.test" + SELECT
    )


@pytest.mark.parametrize(
    "target",
    ["a/../../me@contoso.test", "x?$filter=1@contoso.test", "..", "ad\tele@contoso.test", " "],
)
async def test_unsafe_targets_are_refused_before_anything_is_sent(
    graph: FakeGraph, target: str
) -> None:
    for kind in (EntraRevokeSessions, EntraDisableUser):
        responder = build(kind, graph.http, domain="contoso.test")
        with pytest.raises(ResponderError, match="Refused to"):
            await responder.execute(target)
        assert responder.plan(target).startswith("Refused to")
    assert graph.recorder.requests == []


async def test_a_quote_stays_inside_the_path_segment(graph: FakeGraph) -> None:
    with pytest.raises(ResponderError, match="no such user"):
        await build(EntraDisableUser, graph.http).execute("o'brien@contoso.test")
    assert graph.graph_calls()[0].url.raw_path == b"/v1.0/users/o%27brien@contoso.test" + SELECT


async def test_a_wrong_secret_is_refused_at_the_token_endpoint(graph: FakeGraph) -> None:
    options = EntraDisableUser.Options(
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret_env=ENV,
        login_url=LOGIN,
        graph_url=GRAPH,
    )
    responder = EntraDisableUser.build(options, Context(http=graph.http, environ={ENV: "wrong"}))
    with pytest.raises(ResponderError) as caught:
        await responder.execute(ADELE)
    message = str(caught.value)
    assert (
        "Entra ID refused Fido's client credentials (HTTP 401: invalid_client: AADSTS7000215"
        in message
    )
    assert "Trace ID" not in message and "check tenant_id, client_id" in message
    assert graph.graph_calls() == []


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            graph_error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ),
            r"Entra ID denied it \(HTTP 403: Authorization_RequestDenied: Insufficient privileges",
        ),
        (
            graph_error(500, "UnknownError", "Internal error"),
            r"Entra ID failed \(HTTP 500: UnknownError",
        ),
    ],
)
async def test_graph_failures_are_clear_errors(
    graph: FakeGraph, answer: httpx.Response, match: str
) -> None:
    responder = build(EntraDisableUser, graph.http)
    await responder.users.tokens.get(doing="warm up")  # the token first, then the failure
    graph.recorder.plan(answer)
    with pytest.raises(ResponderError, match=match) as caught:
        await responder.execute(ADELE)
    assert SECRET not in str(caught.value)
    assert graph.users[adele_id(graph)]["accountEnabled"] is True


async def test_a_token_graph_keeps_refusing_is_renewed_once_then_reported(
    graph: FakeGraph,
) -> None:
    graph.refuse_tokens = True
    with pytest.raises(ResponderError) as caught:
        await build(EntraDisableUser, graph.http).execute(ADELE)
    assert "Entra ID refused Fido's credentials (HTTP 401: InvalidAuthenticationToken" in str(
        caught.value
    )
    hosts = [r.url.host for r in graph.recorder.requests]
    assert hosts == ["login.entra.test", "graph.entra.test"] * 2


async def test_throttling_says_when_to_retry(graph: FakeGraph) -> None:
    responder = build(EntraRevokeSessions, graph.http)
    await responder.users.tokens.get(doing="warm up")
    graph.recorder.plan(throttled("7"))
    with pytest.raises(
        VendorRateLimited, match=r"Entra ID is rate limiting Fido \(HTTP 429: TooManyRequests"
    ) as caught:
        await responder.execute(ADELE)
    assert caught.value.retry_after == 7 and "retry after 7 s" in str(caught.value)


async def test_hang_fails_within_the_timeout() -> None:
    with silent_server() as url:
        async with httpx.AsyncClient() as http:
            responder = build(EntraDisableUser, http, login_url=url, graph_url=url, timeout=0.3)
            await fails_within(
                responder.execute(ADELE), 2, match="Entra ID did not answer within 0.3 s"
            )


async def test_connection_refused() -> None:
    url = refused_url()
    async with httpx.AsyncClient() as http:
        responder = build(EntraRevokeSessions, http, login_url=url, graph_url=url)
        await fails_within(
            responder.execute(ADELE), 5, match="could not connect to Entra ID at 127.0.0.1"
        )


@pytest.mark.parametrize(
    "undo_data",
    [
        {},
        {"user_id": "not-a-guid", "changed": True},
        {"user_id": "0b0b0b0b-0000-4000-8000-000000000000"},
    ],
)
async def test_undo_with_bad_undo_data_is_refused(
    graph: FakeGraph, undo_data: dict[str, Any]
) -> None:
    with pytest.raises(ResponderError, match="Cannot undo disabling adele: the undo data"):
        await build(EntraDisableUser, graph.http).undo("adele", undo_data)
    assert graph.recorder.requests == []


def test_plans_name_the_person(graph: FakeGraph) -> None:
    facts = {"display_name": "Adele Vance", "title": "Retail Manager"}
    assert (
        build(EntraDisableUser, graph.http)
        .plan(ADELE, facts)
        .startswith(
            f"Disable {ADELE} (Adele Vance, Retail Manager) in Entra ID — they cannot sign in "
            "until Undo"
        )
    )
    assert "cannot be undone" in build(EntraRevokeSessions, graph.http).plan(ADELE)


@pytest.mark.parametrize(
    "changes",
    [
        {"client_secret": SECRET},  # unknown key: secrets are never options
        {"tenant_id": "contoso tenant"},
        {"client_id": "my-app"},
        {"client_secret_env": "1ENV"},
        {"login_url": "http://login.example"},
        {"graph_url": "ftp://graph.example"},
        {"scope": "User.ReadWrite.All"},
        {"timeout": 600},
    ],
)
def test_options_refuse_unknown_keys_and_bad_values(changes: dict[str, Any]) -> None:
    values = {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret_env": ENV}
    EntraDisableUser.Options.model_validate(values)
    for kind in (EntraRevokeSessions, EntraDisableUser):
        with pytest.raises(ValidationError):
            kind.Options.model_validate(values | changes)


def test_build_reads_the_secret_by_name(graph: FakeGraph) -> None:
    options = EntraRevokeSessions.Options(
        tenant_id=TENANT, client_id=CLIENT_ID, client_secret_env="NOPE"
    )
    with pytest.raises(ConfigError, match="NOPE is not set"):
        EntraRevokeSessions.build(options, Context(http=graph.http, environ={}))
    responder = build(EntraRevokeSessions, graph.http)
    assert SECRET not in repr(vars(responder)) + repr(vars(responder.users))


async def test_secrets_never_reach_messages_or_logs(
    graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    messages: list[str] = []
    with watching_logs(caplog):
        responder = build(EntraDisableUser, graph.http)
        result = await responder.execute(ADELE)
        await responder.undo(ADELE, result.undo_data)
        access = responder.users.tokens.current
        echo = graph_error(400, "Request_BadRequest", f"Bad token {access} for secret {SECRET}")
        for answer in (echo, throttled(), graph_error(500, "UnknownError", "x")):
            graph.recorder.plan(answer)
            with pytest.raises(ResponderError) as caught:
                await responder.execute(ADELE)
            messages.append(str(caught.value))
    assert messages[0].count("***") == 2
    assert_never_told([SECRET, access], *messages, caplog.text)
