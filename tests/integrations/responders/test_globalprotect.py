"""globalprotect_logout against a stand-in for the PAN-OS XML API (``fake_panos.py``), a
server that never answers, and a port nobody listens on."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from integrations.responders.globalprotect_logout import GlobalProtectLogout
from integrations.responders.vendor_http import VendorRateLimited
from pipeline.errors import ConfigError, ResponderError
from pipeline.plugins import Context, Impact, Responder, responders
from tests.integrations.responders.fake_panos import (
    BASE,
    INVALID_CREDENTIAL,
    KEY,
    FakePanOS,
    op_error,
    xml_response,
)
from tests.integrations.responders.saas import (
    assert_never_told,
    assert_secret_only_in,
    fails_within,
    form,
    refused_url,
    silent_server,
    watching_logs,
)

ENV = "FIDO_TEST_PANOS_KEY"
SHOW = (
    "<show><global-protect-gateway><current-user><gateway>GP-Gateway-N</gateway>"
    "</current-user></global-protect-gateway></show>"
)


def logout(user: str, computer: str, domain: str | None = None) -> str:
    extra = f"<domain>{domain}</domain>" if domain else ""
    return (
        "<request><global-protect-gateway><client-logout><gateway>GP-Gateway-N</gateway>"
        f"<user>{user}</user><reason>force-logout</reason><computer>{computer}</computer>"
        f"{extra}</client-logout></global-protect-gateway></request>"
    )


@pytest.fixture
async def panos() -> Any:
    fake = FakePanOS()
    fake.connect("jdoe", "LAPTOP-042")
    fake.connect("asmith", "LAPTOP-007")
    yield fake
    await fake.http.aclose()


def build(http: httpx.AsyncClient, *, key: str = KEY, **changes: Any) -> GlobalProtectLogout:
    values = {"base_url": BASE, "api_key_env": ENV, "gateway": "GP-Gateway-N", "timeout": 2}
    options = GlobalProtectLogout.Options.model_validate(values | changes)
    return GlobalProtectLogout.build(options, Context(http=http, environ={ENV: key}))


def users(panos: FakePanOS) -> list[str]:
    return [s["username"] for s in panos.sessions]


def test_registered_with_its_attributes(panos: FakePanOS) -> None:
    responder = build(panos.http)
    assert responders.get("globalprotect_logout") is GlobalProtectLogout
    assert isinstance(responder, Responder)
    assert (responder.target_kind, responder.reversible, responder.impact) == (
        "user",
        False,
        Impact.low,
    )


async def test_lists_the_gateway_users_then_logs_the_session_out(panos: FakePanOS) -> None:
    responder = build(panos.http)
    result = await responder.execute("jdoe")
    show, out = panos.recorder.requests
    for request in (show, out):
        assert (request.method, str(request.url)) == ("POST", f"{BASE}/api/")
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert_secret_only_in(request, KEY, "X-PAN-KEY", KEY)
    assert form(show) == {"type": "op", "cmd": SHOW}
    assert form(out) == {"type": "op", "cmd": logout("jdoe", "LAPTOP-042")}
    assert users(panos) == ["asmith"]
    assert result.summary == (
        "Logged jdoe out of GlobalProtect on gateway GP-Gateway-N: ended 1 session "
        "(LAPTOP-042); they can connect again unless blocked"
    )
    assert result.undo_data == {
        "gateway": "GP-Gateway-N",
        "sessions": [{"user": "jdoe", "computer": "LAPTOP-042"}],
    }
    with pytest.raises(ResponderError, match="cannot be undone"):
        await responder.undo("jdoe", result.undo_data)


async def test_every_session_of_the_user_ends_with_its_domain(panos: FakePanOS) -> None:
    panos.connect("jdoe", "Dan’s iPhone", domain="corp")
    panos.connect("jdoe", "LAPTOP-9", domain="other")  # a different jdoe
    panos.connect("jdoe", "LAPTOP-1", gateway="GP-Gateway-Other")  # another gateway
    result = await build(panos.http).execute("CORP\\jdoe")
    cmds = [form(r)["cmd"] for r in panos.recorder.requests[1:]]
    assert cmds == [logout("jdoe", "LAPTOP-042"), logout("jdoe", "Dan’s iPhone", "corp")]
    assert "ended 2 sessions (LAPTOP-042, Dan’s iPhone)" in result.summary
    left = [(s["username"], s["computer"]) for s in panos.sessions]
    assert left == [("asmith", "LAPTOP-007"), ("jdoe", "LAPTOP-9"), ("jdoe", "LAPTOP-1")]


async def test_upn_and_case_name_the_same_account(panos: FakePanOS) -> None:
    panos.connect("corp\\bwayne", "BATCAVE")
    await build(panos.http).execute("BWayne@corp.example")
    assert "bwayne" not in " ".join(users(panos))


async def test_no_session_means_nothing_to_log_out(panos: FakePanOS) -> None:
    result = await build(panos.http).execute("nobody")
    assert len(panos.recorder.requests) == 1
    assert result.summary == (
        "nobody had no GlobalProtect session on gateway GP-Gateway-N; nothing to log out"
    )
    assert result.undo_data == {"gateway": "GP-Gateway-N", "sessions": []}


async def test_a_session_panos_cannot_log_out_is_reported(panos: FakePanOS) -> None:
    panos.connect("jdoe", "Dan’s iPhone")
    show = await panos.http.post(
        f"{BASE}/api/", data={"type": "op", "cmd": SHOW}, headers={"X-PAN-KEY": KEY}
    )
    panos.sessions = [s for s in panos.sessions if s["computer"] != "Dan’s iPhone"]
    panos.recorder.plan(xml_response(200, show.text))  # the list still shows it
    with pytest.raises(ResponderError) as caught:
        await build(panos.http).execute("jdoe")
    assert str(caught.value) == (
        "Could not log jdoe out of GlobalProtect completely: ended the session on LAPTOP-042; "
        "Dan’s iPhone: PAN-OS did not log it out (User not found)"
    )


async def test_values_are_xml_escaped_in_the_command(panos: FakePanOS) -> None:
    panos.connect('a<b>&"c', "PC<1>")
    await build(panos.http).execute('a<b>&"c')
    cmd = form(panos.recorder.requests[-1])["cmd"]
    assert '<user>a&lt;b&gt;&amp;"c</user>' in cmd and "<computer>PC&lt;1&gt;</computer>" in cmd
    assert ET.fromstring(cmd).findtext("./global-protect-gateway/client-logout/user") == 'a<b>&"c'
    assert 'a<b>&"c' not in users(panos)


async def test_an_injected_element_is_only_a_name(panos: FakePanOS) -> None:
    result = await build(panos.http).execute("x</user><user>asmith")
    assert "had no GlobalProtect session" in result.summary
    assert users(panos) == ["jdoe", "asmith"]


@pytest.mark.parametrize("target", ["jdoe\n", "jd\x00oe", "j doe", "", "a\u202eb"])
async def test_unsafe_targets_are_refused_before_anything_is_sent(
    panos: FakePanOS, target: str
) -> None:
    with pytest.raises(ResponderError, match="Refused to log out"):
        await build(panos.http).execute(target)
    assert build(panos.http).plan(target).startswith("Refused to log out")
    assert panos.recorder.requests == []


async def test_a_wrong_key_is_invalid_credential(panos: FakePanOS) -> None:
    with pytest.raises(ResponderError) as caught:
        await build(panos.http, key="wrong").execute("jdoe")
    assert "PAN-OS denied it (HTTP 403: code 403: Invalid Credential)" in str(caught.value)
    assert "FIDO_TEST_PANOS_KEY" in str(caught.value)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            xml_response(200, INVALID_CREDENTIAL),
            r"PAN-OS refused the API key \(code 403: Invalid Credential\)",
        ),
        (
            op_error("16", "Unauthorized request"),
            r"refused the API key \(code 16: Unauthorized request\)",
        ),
        (op_error("17", "show is unexpected"), r"refused the command \(code 17: show is"),
        (xml_response(200, "<html>login</html>"), r"answered <html>, not <response>"),
        (xml_response(200, "<response status="), r"without the XML <response> it documents"),
        (xml_response(500, "<html>oops</html>"), r"PAN-OS failed \(HTTP 500\); try again"),
    ],
)
async def test_panos_failures_are_clear_errors(
    panos: FakePanOS, answer: httpx.Response, match: str
) -> None:
    panos.recorder.plan(answer)
    with pytest.raises(ResponderError, match=match) as caught:
        await build(panos.http).execute("jdoe")
    assert KEY not in str(caught.value)
    assert "jdoe" in users(panos)


async def test_rate_limit_says_when_to_retry(panos: FakePanOS) -> None:
    panos.recorder.plan(httpx.Response(429, headers={"Retry-After": "20"}))
    with pytest.raises(VendorRateLimited, match="retry after 20 s") as caught:
        await build(panos.http).execute("jdoe")
    assert caught.value.retry_after == 20


async def test_hang_fails_within_the_timeout() -> None:
    with silent_server() as url:
        async with httpx.AsyncClient() as http:
            responder = build(http, base_url=url, timeout=0.3)
            await fails_within(
                responder.execute("jdoe"), 2, match="PAN-OS did not answer within 0.3 s"
            )


async def test_connection_refused() -> None:
    async with httpx.AsyncClient() as http:
        responder = build(http, base_url=refused_url())
        await fails_within(
            responder.execute("jdoe"), 5, match="could not connect to PAN-OS at 127.0.0.1"
        )


def test_plan_names_the_gateway(panos: FakePanOS) -> None:
    assert build(panos.http).plan("jdoe", {"display_name": "John Doe"}) == (
        "Log jdoe (John Doe) out of GlobalProtect on gateway GP-Gateway-N — every current "
        "session ends; they can connect again unless blocked; this cannot be undone"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"api_key": KEY},
        {"gateway": "GP</gateway><x>"},
        {"gateway": ""},
        {"base_url": "http://fw1.example"},
        {"api_key_env": "has-dash"},
        {"timeout": -1},
    ],
)
def test_options_refuse_unknown_keys_and_bad_values(changes: dict[str, Any]) -> None:
    values = {"base_url": BASE, "api_key_env": ENV, "gateway": "GP-Gateway-N"}
    GlobalProtectLogout.Options.model_validate(values)
    with pytest.raises(ValidationError):
        GlobalProtectLogout.Options.model_validate(values | changes)


def test_build_reads_the_key_by_name(panos: FakePanOS) -> None:
    options = GlobalProtectLogout.Options(base_url=BASE, api_key_env="NOPE", gateway="G")
    with pytest.raises(ConfigError, match="NOPE is not set"):
        GlobalProtectLogout.build(options, Context(http=panos.http, environ={}))
    assert KEY not in repr(vars(build(panos.http)))


async def test_the_key_never_reaches_messages_or_logs(
    panos: FakePanOS, caplog: pytest.LogCaptureFixture
) -> None:
    echo = xml_response(
        403,
        f"<response status='error' code='403'><result><msg>bad key {KEY}</msg></result></response>",
    )
    messages: list[str] = []
    with watching_logs(caplog):
        for answer in (echo, op_error("17", f"cmd with {KEY}"), xml_response(500, KEY)):
            panos.recorder.plan(answer)
            with pytest.raises(ResponderError) as caught:
                await build(panos.http).execute("jdoe")
            messages.append(str(caught.value))
        await build(panos.http).execute("jdoe")
    assert "***" in messages[0] and "***" in messages[1]
    assert_never_told([KEY], *messages, caplog.text)
