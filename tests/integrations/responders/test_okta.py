"""okta_suspend_user and okta_clear_sessions against a stand-in for Okta's Users API
(``fake_okta.py``), a server that never answers, and a port nobody listens on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from integrations.responders.okta_clear_sessions import OktaClearSessions
from integrations.responders.okta_suspend_user import OktaSuspendUser
from integrations.responders.vendor_http import VendorRateLimited
from pipeline.errors import ConfigError, ResponderError
from pipeline.plugins import Context, Impact, Responder, responders
from tests.integrations.responders.fake_okta import (
    BASE,
    TOKEN,
    FakeOkta,
    okta_error,
    rate_limited,
    server_error,
)
from tests.integrations.responders.saas import (
    assert_never_told,
    assert_secret_only_in,
    fails_within,
    json_response,
    refused_url,
    silent_server,
    watching_logs,
)

ENV = "FIDO_TEST_OKTA_TOKEN"
JDOE = "00ub0oNGTSWTBKOLGLNR"


@pytest.fixture
async def okta() -> Any:
    fake = FakeOkta()
    fake.add(JDOE, "jdoe@corp.example")
    yield fake
    await fake.http.aclose()


def suspender(http: httpx.AsyncClient, **changes: Any) -> OktaSuspendUser:
    options = OktaSuspendUser.Options.model_validate(
        {"base_url": BASE, "api_token_env": ENV, "timeout": 2} | changes
    )
    return OktaSuspendUser.build(options, Context(http=http, environ={ENV: TOKEN}))


def clearer(http: httpx.AsyncClient, **changes: Any) -> OktaClearSessions:
    options = OktaClearSessions.Options.model_validate(
        {"base_url": BASE, "api_token_env": ENV, "timeout": 2} | changes
    )
    return OktaClearSessions.build(options, Context(http=http, environ={ENV: TOKEN}))


def test_registered_with_their_attributes(okta: FakeOkta) -> None:
    suspend, clear = suspender(okta.http), clearer(okta.http)
    assert responders.get("okta_suspend_user") is OktaSuspendUser
    assert responders.get("okta_clear_sessions") is OktaClearSessions
    assert isinstance(suspend, Responder) and isinstance(clear, Responder)
    assert (suspend.target_kind, suspend.label, suspend.reversible) == ("user", "suspend", True)
    assert suspend.impact is Impact.high and clear.impact is Impact.low
    assert clear.reversible is False


async def test_suspend_looks_up_the_login_then_suspends_by_id(okta: FakeOkta) -> None:
    result = await suspender(okta.http).execute("jdoe@corp.example")
    get, post = okta.recorder.requests
    assert (get.method, get.url.raw_path) == ("GET", b"/api/v1/users/jdoe@corp.example")
    assert get.headers["Accept"] == "application/json"
    assert_secret_only_in(get, TOKEN, "Authorization", f"SSWS {TOKEN}")
    assert (post.method, post.url.path) == ("POST", f"/api/v1/users/{JDOE}/lifecycle/suspend")
    assert post.content == b"" and not post.url.query
    assert_secret_only_in(post, TOKEN, "Authorization", f"SSWS {TOKEN}")
    assert okta.users[JDOE]["status"] == "SUSPENDED"
    assert result.summary.startswith("Suspended jdoe@corp.example (John Doe) in Okta")
    assert result.undo_data == {"user_id": JDOE, "login": "jdoe@corp.example", "changed": True}


async def test_undo_unsuspends(okta: FakeOkta) -> None:
    responder = suspender(okta.http)
    done = await responder.execute("jdoe@corp.example")
    undone = await responder.undo("jdoe@corp.example", done.undo_data)
    last = okta.recorder.requests[-1]
    assert (last.method, last.url.path) == ("POST", f"/api/v1/users/{JDOE}/lifecycle/unsuspend")
    assert okta.users[JDOE]["status"] == "ACTIVE"
    assert undone.summary == "Unsuspended jdoe@corp.example in Okta; they can sign in again"


async def test_already_suspended_changes_nothing_and_undo_leaves_it(okta: FakeOkta) -> None:
    okta.users[JDOE]["status"] = "SUSPENDED"
    responder = suspender(okta.http)
    result = await responder.execute("jdoe@corp.example")
    assert [r.method for r in okta.recorder.requests] == ["GET"]
    assert "was already suspended in Okta; nothing changed" in result.summary
    assert result.undo_data["changed"] is False
    undone = await responder.undo("jdoe@corp.example", result.undo_data)
    assert "Left jdoe@corp.example as they were" in undone.summary
    assert okta.users[JDOE]["status"] == "SUSPENDED"
    assert [r.method for r in okta.recorder.requests] == ["GET"]


async def test_suspended_by_someone_else_meanwhile_is_already_suspended(okta: FakeOkta) -> None:
    active = dict(okta.users[JDOE])
    okta.users[JDOE]["status"] = "SUSPENDED"
    okta.recorder.plan(json_response(200, active))  # what the first read saw
    result = await suspender(okta.http).execute("jdoe@corp.example")
    assert [r.method for r in okta.recorder.requests] == ["GET", "POST", "GET"]
    assert "already suspended" in result.summary and result.undo_data["changed"] is False


async def test_deactivated_user_is_left_alone(okta: FakeOkta) -> None:
    okta.users[JDOE]["status"] = "DEPROVISIONED"
    result = await suspender(okta.http).execute("jdoe@corp.example")
    assert "was deactivated in Okta; nothing changed" in result.summary
    assert len(okta.recorder.requests) == 1


async def test_a_user_okta_cannot_suspend_is_an_error_with_its_status(okta: FakeOkta) -> None:
    okta.users[JDOE]["status"] = "LOCKED_OUT"
    with pytest.raises(ResponderError) as caught:
        await suspender(okta.http).execute("jdoe@corp.example")
    message = str(caught.value)
    assert "Okta suspends only ACTIVE users and jdoe@corp.example is LOCKED_OUT" in message
    assert "E0000001" in message and "Cannot suspend a user that is not active" in message


async def test_unknown_user_is_no_such_user(okta: FakeOkta) -> None:
    with pytest.raises(ResponderError, match="no such user in Okta"):
        await suspender(okta.http).execute("ghost@corp.example")
    with pytest.raises(ResponderError, match="no such user in Okta"):
        await clearer(okta.http).execute("ghost@corp.example")


async def test_bare_and_windows_names_use_the_domain_option_or_the_shortname(
    okta: FakeOkta,
) -> None:
    await suspender(okta.http, domain="corp.example").execute("CORP\\jdoe")
    assert okta.recorder.requests[0].url.raw_path == b"/api/v1/users/jdoe@corp.example"
    okta.users[JDOE]["status"] = "ACTIVE"
    await suspender(okta.http).execute("jdoe")  # Okta's login shortname
    assert okta.recorder.requests[2].url.raw_path == b"/api/v1/users/jdoe"


@pytest.mark.parametrize(
    ("target", "raw"),
    [
        ("o'brien@corp.example", b"/api/v1/users/o%27brien@corp.example"),
        ("a%2F..%2Fb@corp.example", b"/api/v1/users/a%252F..%252Fb@corp.example"),
        ("x#frag@corp.example", b"/api/v1/users/x%23frag@corp.example"),
    ],
)
async def test_odd_logins_stay_one_path_segment(okta: FakeOkta, target: str, raw: bytes) -> None:
    with pytest.raises(ResponderError, match="no such user"):
        await suspender(okta.http).execute(target)
    assert okta.recorder.requests[0].url.raw_path == raw


@pytest.mark.parametrize(
    "target",
    ["a/b@corp.example", "x?admin=1", "..", "", "jdoe\n@corp.example", "jd oe", "a\u200bb"],
)
async def test_unsafe_targets_are_refused_before_anything_is_sent(
    okta: FakeOkta, target: str
) -> None:
    for responder in (suspender(okta.http), clearer(okta.http)):
        with pytest.raises(ResponderError, match="Refused to"):
            await responder.execute(target)
        assert responder.plan(target).startswith("Refused to")
    assert okta.recorder.requests == []


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            okta_error(401, "E0000011", "Invalid token provided"),
            r"refused Fido's credentials \(HTTP 401: E0000011: Invalid token provided\); check "
            r"the Okta API token in FIDO_TEST_OKTA_TOKEN",
        ),
        (
            okta_error(
                403, "E0000006", "You do not have permission to perform the requested action"
            ),
            r"Okta denied it \(HTTP 403: E0000006: You do not have permission",
        ),
        (server_error(), r"Okta failed \(HTTP 500: E0000009: Internal Server Error\); try again"),
        (httpx.Response(302, headers={"Location": "https://login.example"}), "redirect"),
    ],
)
async def test_vendor_failures_are_clear_errors(
    okta: FakeOkta, answer: httpx.Response, match: str
) -> None:
    okta.recorder.plan(answer)
    with pytest.raises(ResponderError, match=match) as caught:
        await suspender(okta.http).execute("jdoe@corp.example")
    assert TOKEN not in str(caught.value)
    assert okta.users[JDOE]["status"] == "ACTIVE"


async def test_a_wrong_token_is_refused_by_okta(okta: FakeOkta) -> None:
    context = Context(http=okta.http, environ={ENV: "wrong-token"})
    options = OktaSuspendUser.Options(base_url=BASE, api_token_env=ENV)
    with pytest.raises(ResponderError, match="E0000011"):
        await OktaSuspendUser.build(options, context).execute("jdoe@corp.example")


async def test_rate_limit_says_when_to_retry(okta: FakeOkta) -> None:
    okta.recorder.plan(rate_limited())
    with pytest.raises(VendorRateLimited) as caught:
        await suspender(okta.http).execute("jdoe@corp.example")
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30
    assert "Okta is rate limiting Fido (HTTP 429: E0000047" in str(caught.value)
    assert "retry after 30 s" in str(caught.value) or "retry after 29 s" in str(caught.value)
    okta.recorder.plan(rate_limited(**{"Retry-After": "12"}))
    with pytest.raises(VendorRateLimited, match="retry after 12 s") as caught:
        await clearer(okta.http).execute("jdoe@corp.example")
    assert caught.value.retry_after == 12


async def test_hang_fails_within_the_timeout() -> None:
    with silent_server() as url:
        async with httpx.AsyncClient() as http:
            responder = suspender(http, base_url=url, timeout=0.3)
            await fails_within(
                responder.execute("jdoe@corp.example"), 2, match="Okta did not answer within 0.3 s"
            )


async def test_connection_refused() -> None:
    async with httpx.AsyncClient() as http:
        responder = clearer(http, base_url=refused_url())
        await fails_within(
            responder.execute("jdoe@corp.example"),
            5,
            match="could not connect to Okta at 127.0.0.1",
        )


@pytest.mark.parametrize(
    "undo_data",
    [
        {},
        {"user_id": "../../x", "changed": True},
        {"user_id": JDOE},
        {"user_id": JDOE, "changed": "yes"},
    ],
)
async def test_undo_with_bad_undo_data_is_refused(
    okta: FakeOkta, undo_data: dict[str, Any]
) -> None:
    with pytest.raises(ResponderError, match="Cannot undo suspending jdoe: the undo data"):
        await suspender(okta.http).undo("jdoe", undo_data)
    assert okta.recorder.requests == []


async def test_undo_after_someone_else_unsuspended(okta: FakeOkta) -> None:
    undo_data = {"user_id": JDOE, "login": "jdoe@corp.example", "changed": True}
    result = await suspender(okta.http).undo("jdoe@corp.example", undo_data)
    assert (
        result.summary
        == "jdoe@corp.example was no longer suspended in Okta (status ACTIVE); nothing to undo"
    )


async def test_undo_of_a_deleted_user(okta: FakeOkta) -> None:
    undo_data = {"user_id": "00u1nothere0000000000", "login": "gone@corp.example", "changed": True}
    with pytest.raises(ResponderError, match="no longer in Okta"):
        await suspender(okta.http).undo("gone@corp.example", undo_data)


async def test_clear_sessions_deletes_them_with_oauth_tokens(okta: FakeOkta) -> None:
    responder = clearer(okta.http)
    result = await responder.execute("jdoe@corp.example")
    delete = okta.recorder.requests[-1]
    assert (delete.method, delete.url.path) == ("DELETE", f"/api/v1/users/{JDOE}/sessions")
    assert dict(delete.url.params) == {"oauthTokens": "true"}
    assert_secret_only_in(delete, TOKEN, "Authorization", f"SSWS {TOKEN}")
    assert result.summary == (
        "Ended every Okta session of jdoe@corp.example (John Doe) and revoked their OAuth "
        "tokens; they must sign in again"
    )
    assert result.undo_data == {"user_id": JDOE, "login": "jdoe@corp.example"}
    with pytest.raises(ResponderError, match="cannot be undone"):
        await responder.undo("jdoe@corp.example", result.undo_data)
    await clearer(okta.http, revoke_oauth_tokens=False).execute("jdoe@corp.example")
    assert not okta.recorder.requests[-1].url.query


def test_plans_name_the_person(okta: FakeOkta) -> None:
    facts = {"display_name": "John Doe", "department": "Finance"}
    assert suspender(okta.http).plan("jdoe@corp.example", facts) == (
        "Suspend jdoe@corp.example (John Doe, Finance) in Okta — they cannot sign in until Undo"
    )
    assert "this cannot be undone" in clearer(okta.http).plan("jdoe@corp.example")


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": BASE, "api_token_env": ENV, "api_token": TOKEN},  # unknown key
        {"base_url": BASE},  # api_token_env missing
        {"base_url": "http://acme.okta.example", "api_token_env": ENV},  # not https
        {"base_url": f"{BASE}/?x=1", "api_token_env": ENV},
        {"base_url": BASE, "api_token_env": "not a name"},
        {"base_url": BASE, "api_token_env": ENV, "timeout": 0},
        {"base_url": BASE, "api_token_env": ENV, "domain": "corp example"},
    ],
)
def test_options_refuse_unknown_keys_and_bad_values(options: dict[str, Any]) -> None:
    for responder in (OktaSuspendUser, OktaClearSessions):
        with pytest.raises(ValidationError):
            responder.Options.model_validate(options)


def test_build_reads_the_token_by_name(okta: FakeOkta) -> None:
    options = OktaSuspendUser.Options(base_url=BASE, api_token_env="OTHER")
    with pytest.raises(ConfigError, match="OTHER is not set"):
        OktaSuspendUser.build(options, Context(http=okta.http, environ={ENV: TOKEN}))
    built = suspender(okta.http)
    assert TOKEN not in repr(vars(built)) and TOKEN not in repr(vars(built.users))


async def test_the_token_never_reaches_messages_or_logs(
    okta: FakeOkta, caplog: pytest.LogCaptureFixture
) -> None:
    echo = okta_error(400, "E0000003", f"The request body was not well-formed: {TOKEN}")
    messages: list[str] = []
    with watching_logs(caplog):
        for answer in (echo, rate_limited(), server_error(), okta_error(401, "E0000011", "x")):
            okta.recorder.plan(answer)
            with pytest.raises(ResponderError) as caught:
                await suspender(okta.http).execute("jdoe@corp.example")
            messages.append(str(caught.value))
        await suspender(okta.http).execute("jdoe@corp.example")
        await clearer(okta.http).execute("jdoe@corp.example")
    assert "***" in messages[0]
    assert_never_told([TOKEN], *messages, caplog.text)
