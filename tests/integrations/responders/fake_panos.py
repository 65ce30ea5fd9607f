"""A stand-in for the PAN-OS XML API's GlobalProtect commands, answering as the "PAN-OS and
Panorama API Usage Guide" documents them ("Show and Manage GlobalProtect Users (API)",
"API Authentication and Security", "PAN-OS XML API Error Codes").

- ``/api/`` takes ``type=op`` and ``cmd=<xml>`` (query string or form body) and the key in
  ``X-PAN-KEY`` (or ``key=``); a missing or wrong key → HTTP 403 ``<response status =
  'error' code = '403'><result><msg>Invalid Credential</msg></result></response>``;
- ``<show><global-protect-gateway><current-user>[<gateway>G</gateway>]…`` → ``<response
  status="success"><result><entry>…</entry>…</result></response>``;
- ``<request><global-protect-gateway><client-logout>`` with gateway, user, reason, computer
  (and domain) → ``<response status="success"><result><response status="success">
  <gateway/><domain/><user/><computer/></response></result></response>``;
- malformed XML → ``<response status="error" code="18">``; an unknown command → code 17.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.integrations.responders.saas import Recorder, form

KEY = "LUFRPT1TWFhZeEhxRUVaUUk0eDlpbWhQZW1BN2c9PQ=="
BASE = "https://fw1.panos.test"


def xml_response(status: int, text: str) -> httpx.Response:
    return httpx.Response(
        status, content=text.encode(), headers={"Content-Type": "application/xml"}
    )


INVALID_CREDENTIAL = (
    "<response status = 'error' code = '403'><result><msg>Invalid Credential</msg></result>"
    "</response>"
)


def op_error(code: str, line: str) -> httpx.Response:
    return xml_response(
        200, f'<response status="error" code="{code}"><msg><line>{line}</line></msg></response>'
    )


@dataclass
class FakePanOS:
    sessions: list[dict[str, str]] = field(default_factory=list)
    commands: list[ET.Element] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recorder = Recorder(self._handle)
        self.http = self.recorder.http

    def connect(
        self,
        user: str,
        computer: str,
        *,
        gateway: str = "GP-Gateway-N",
        domain: str = "",
        **extra: str,
    ) -> None:
        self.sessions.append(
            {
                "gateway": gateway,
                "domain": domain,
                "islocal": "yes",
                "username": user,
                "primary-username": user,
                "computer": computer,
                "client": "Microsoft Windows 11 Enterprise , 64-bit",
                "vpn-type": "Device Level VPN",
                "virtual-ip": "192.168.2.1",
                "public-ip": "166.173.63.240",
                "tunnel-type": "IPSec",
                "login-time": "Jan.22 01:50:36",
                "login-time-utc": "1421916636",
                "lifetime": "2592000",
                **extra,
            }
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        fields: dict[str, Any] = dict(request.url.params) | form(request)
        key = request.headers.get("X-PAN-KEY") or fields.get("key")
        if request.url.path != "/api/" or key != KEY:
            return xml_response(403, INVALID_CREDENTIAL)
        if fields.get("type") != "op":
            return op_error("17", "Invalid request type")
        try:
            cmd = ET.fromstring(fields.get("cmd", ""))
        except ET.ParseError:
            return op_error("18", "Malformed Request")
        self.commands.append(cmd)
        current = cmd.find("./global-protect-gateway/current-user")
        if cmd.tag == "show" and current is not None:
            return self._current(current)
        logout = cmd.find("./global-protect-gateway/client-logout")
        if cmd.tag == "request" and logout is not None:
            return self._logout(logout)
        return op_error("17", f"{cmd.tag} is unexpected")

    def _current(self, query: ET.Element) -> httpx.Response:
        gateway = query.findtext("gateway")
        result = ET.Element("result")
        for session in self.sessions:
            if gateway is not None and session["gateway"] != gateway:
                continue
            entry = ET.SubElement(result, "entry")
            for tag, value in session.items():
                if tag != "gateway":
                    ET.SubElement(entry, tag).text = value or None
        response = ET.Element("response", status="success")
        response.append(result)
        return xml_response(200, ET.tostring(response, encoding="unicode"))

    def _logout(self, query: ET.Element) -> httpx.Response:
        wanted = {tag: query.findtext(tag) for tag in ("gateway", "user", "reason", "computer")}
        if None in wanted.values() or wanted["reason"] != "force-logout":
            return op_error("17", "client-logout: missing or invalid element")
        domain = query.findtext("domain")
        inner = ET.Element("response")
        for tag in ("gateway", "domain", "user", "computer"):
            ET.SubElement(inner, tag).text = (
                (domain or "(null)") if tag == "domain" else wanted[tag]
            )
        match = [
            s
            for s in self.sessions
            if (s["gateway"], s["username"], s["computer"])
            == (wanted["gateway"], wanted["user"], wanted["computer"])
            and (domain is None or s["domain"] == domain)
        ]
        if match:
            self.sessions.remove(match[0])
            inner.set("status", "success")
        else:
            inner.set("status", "error")
            ET.SubElement(inner, "error").text = "User not found"
        response = ET.Element("response", status="success")
        ET.SubElement(response, "result").append(inner)
        return xml_response(200, ET.tostring(response, encoding="unicode"))
