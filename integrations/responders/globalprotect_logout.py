"""``globalprotect_logout``: log a user out of a Palo Alto Networks GlobalProtect gateway.

Followed: "PAN-OS and Panorama API Usage Guide", "Show and Manage GlobalProtect Users
(API)", "API Authentication and Security" and "PAN-OS XML API Error Codes"
(docs.paloaltonetworks.com/pan-os/9-1/pan-os-panorama-api/pan-os-xml-api-use-cases/
show-and-manage-globalprotect-users-api):

1. ``type=op`` ``<show><global-protect-gateway><current-user><gateway>G</gateway>
   </current-user></global-protect-gateway></show>`` lists the sessions, one ``<entry>``
   each with ``<domain>``, ``<username>``, ``<computer>``, ``<client>``, ``<virtual-ip>``,
   ``<public-ip>``, ``<login-time>``;
2. for each of the target's sessions, ``type=op`` ``<request><global-protect-gateway>
   <client-logout><gateway>G</gateway><user>U</user><reason>force-logout</reason>
   <computer>C</computer></client-logout></global-protect-gateway></request>`` (with the
   session's ``<domain>`` when it has one), answered ``<response status="success"><result>
   <response status="success"><gateway/><domain/><user/><computer/></response></result>
   </response>``.

Requests are POSTed to ``/api/`` as form fields (the guide allows GET or POST; POST keeps
the command out of URLs and logs), with the API key in the ``X-PAN-KEY`` header. Every
answer is XML ``<response status="success|error" code="…">``; a refused key is HTTP 403
``<response status="error" code="403"><result><msg>Invalid Credential</msg></result>``.
Values go into the command through ElementTree, so they are XML-escaped.

Logging out cannot be undone (the user may simply connect again: block the account to keep
them out). A user with no session is reported "nothing to log out", not as an error.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations.http import xml_words
from integrations.responders.vendor_http import (
    BaseURL,
    Seconds,
    VendorAPI,
    account_parts,
    clean_target,
    http_client,
)
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, EnvName, Impact, ResponderResult, person_details, responders

log = logging.getLogger(__name__)

VENDOR = "PAN-OS"
MAX_XML = 8 << 20


class GlobalProtectOptions(BaseModel):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_url": "https://fw1.corp.example",
                    "api_key_env": "FIDO_PANOS_KEY",
                    "gateway": "GP-Gateway-N",
                }
            ]
        },
    )

    base_url: BaseURL  # the firewall (or Panorama), e.g. https://fw1.corp.example
    api_key_env: EnvName  # the variable holding the XML API key
    gateway: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$")  # e.g. GP-Gateway-N
    timeout: Seconds = 10.0


@dataclass(frozen=True)
class Session:
    user: str
    domain: str
    computer: str


def _text(entry: ET.Element, tag: str) -> str:
    return (entry.findtext(tag) or "").strip()


def _same_user(target: str, username: str, domain: str) -> bool:
    """Whether a session's user is ``target`` (``alice``, ``CORP\\alice``,
    ``alice@corp.example`` all name the same account in the same domain)."""
    t_account, t_domain = account_parts(target)
    u_account, u_domain = account_parts(username)
    if domain and domain != "(null)":
        u_domain = u_domain or domain
    if t_account.casefold() != u_account.casefold():
        return False
    if t_domain is None or u_domain is None:
        return True
    first, second = t_domain.casefold(), u_domain.casefold()
    return first == second or first.split(".")[0] == second.split(".")[0]


def _command(*path: str, fields: list[tuple[str, str]]) -> str:
    """``<path[0]><path[1]>…<field>value</field>…</…>``, every value XML-escaped."""
    root = ET.Element(path[0])
    leaf = root
    for tag in path[1:]:
        leaf = ET.SubElement(leaf, tag)
    for tag, value in fields:
        ET.SubElement(leaf, tag).text = value
    return ET.tostring(root, encoding="unicode")


@responders.register("globalprotect_logout")
class GlobalProtectLogout:
    """Log a user out of GlobalProtect (not reversible)."""

    name = "globalprotect_logout"
    target_kind: Kind = "user"
    label = "log out of GlobalProtect"
    reversible = False
    impact = Impact.low
    Options = GlobalProtectOptions

    def __init__(
        self, options: GlobalProtectOptions, *, http: httpx.AsyncClient, api_key: SecretStr
    ) -> None:
        self.options = options
        self._key = api_key
        self.api = VendorAPI(
            VENDOR,
            http,
            timeout=options.timeout,
            secrets=lambda: [api_key.get_secret_value()],
            credentials=f"the API key in {options.api_key_env}",
        )

    @classmethod
    def build(cls, options: GlobalProtectOptions, context: Context) -> GlobalProtectLogout:
        """The responder for ``options``, its API key read from the named variable."""
        key = SecretStr(context.secret(options.api_key_env))
        return cls(options, http=http_client(context), api_key=key)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            clean_target(target, refusing="log out")
        except ResponderError as exc:
            return str(exc)
        return (
            f"Log {target}{person_details(facts)} out of GlobalProtect on gateway "
            f"{self.options.gateway} — every current session ends; they can connect again "
            "unless blocked; this cannot be undone"
        )

    async def execute(self, target: str) -> ResponderResult:
        value = clean_target(target, refusing="log out")
        gateway = self.options.gateway
        doing = f"log {target} out of GlobalProtect"
        show = _command(
            "show", "global-protect-gateway", "current-user", fields=[("gateway", gateway)]
        )
        root = await self._op(show, doing=doing)
        sessions = [
            Session(_text(e, "username"), _text(e, "domain"), _text(e, "computer"))
            for e in root.iterfind("./result/entry")
        ]
        mine = [s for s in sessions if s.user and _same_user(value, s.user, s.domain)]
        if not mine:
            return ResponderResult(
                summary=f"{target} had no GlobalProtect session on gateway {gateway}; "
                "nothing to log out",
                undo_data={"gateway": gateway, "sessions": []},
            )
        ended: list[Session] = []
        refused: list[str] = []
        for session in mine:
            try:
                await self._logout(session, doing=doing)
            except ResponderError as exc:
                refused.append(f"{session.computer or 'unnamed computer'}: {exc}")
            else:
                ended.append(session)
        names = ", ".join(s.computer or "unnamed computer" for s in ended)
        if refused:
            done = f"ended the session on {names}; " if ended else ""
            raise ResponderError(f"Could not {doing} completely: {done}{'; '.join(refused)}")
        log.info("globalprotect_logout: logged %s out of %s (%d)", target, gateway, len(ended))
        count = f"{len(ended)} session" + ("" if len(ended) == 1 else "s")
        return ResponderResult(
            summary=f"Logged {target} out of GlobalProtect on gateway {gateway}: ended "
            f"{count} ({names}); they can connect again unless blocked",
            undo_data={
                "gateway": gateway,
                "sessions": [{"user": s.user, "computer": s.computer} for s in ended],
            },
        )

    async def _logout(self, session: Session, *, doing: str) -> None:
        fields = [
            ("gateway", self.options.gateway),
            ("user", session.user),
            ("reason", "force-logout"),
            ("computer", session.computer),
        ]
        if session.domain and session.domain != "(null)":
            fields.append(("domain", session.domain))
        cmd = _command("request", "global-protect-gateway", "client-logout", fields=fields)
        root = await self._op(cmd, doing=doing)
        inner = root.find("./result/response")
        if inner is not None and inner.get("status") != "success":
            raise ResponderError(f"PAN-OS did not log it out ({xml_words(inner) or 'no reason'})")

    async def _op(self, cmd: str, *, doing: str) -> ET.Element:
        """Run an operational command; its ``<response status="success">``, or
        ResponderError."""
        response = await self.api.send(
            "POST",
            f"{self.options.base_url}/api/",
            doing=doing,
            data={"type": "op", "cmd": cmd},
            headers={"X-PAN-KEY": self._key.get_secret_value()},
        )
        if not response.is_success:
            raise self.api.error(response, doing=doing)
        if len(response.content) > MAX_XML:
            raise ResponderError(f"Could not {doing}: PAN-OS answered more than 8 MiB")
        try:
            root = ET.fromstring(response.content)
        except ET.ParseError:
            raise ResponderError(
                f"Could not {doing}: PAN-OS answered without the XML <response> it documents"
            ) from None
        if root.tag != "response":
            raise ResponderError(f"Could not {doing}: PAN-OS answered <{root.tag}>, not <response>")
        if root.get("status") != "success":
            said = self.api.words(response) or "no reason given"
            if root.get("code") in ("403", "16"):
                raise ResponderError(
                    f"Could not {doing}: PAN-OS refused the API key ({said}); check "
                    f"{self.options.api_key_env} and the admin role's XML API permissions"
                )
            raise ResponderError(f"Could not {doing}: PAN-OS refused the command ({said})")
        return root

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        raise ResponderError(
            f"Logging {target} out of GlobalProtect cannot be undone: they can connect again "
            "themselves when they are allowed to"
        )
