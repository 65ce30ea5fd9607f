"""The ``zeek`` detector: notices from Zeek's ``notice.log`` written as JSON.

With ``LogAscii::use_json = T`` Zeek writes one JSON record per line; a log shipper (or
the ``logfile`` source) passes them on, one record, an array or JSON Lines per delivery::

    {"ts": 1320435875.879278, "uid": "CmES5u32sYpV7JYN", "id.orig_h": "192.168.1.105",
     "id.orig_p": 49169, "id.resp_h": "68.232.35.139", "id.resp_p": 443,
     "fuid": "Fz9E7n2f2xo1xnPS4k", "proto": "tcp", "note": "SSL::Invalid_Server_Cert",
     "msg": "SSL certificate validation failed with (unable to get local issuer …)",
     "sub": "CN=www.paypal.com,…", "src": "192.168.1.105", "dst": "68.232.35.139",
     "p": 443, "actions": ["Notice::ACTION_LOG"], "suppress_for": 3600.0}

``ts`` may be epoch seconds or ISO 8601 (``JSON::TS_ISO8601``). Records of other logs
(a shipper's ``_path`` says which, or they have no ``note``) are skipped, and so is the
``{"notice": {…}}`` wrapping the Kafka writer adds; a delivery without a notice is a
ParseError. The connection's originator and responder (or the notice's own ``src`` and
``dst``) are the source and destination IPs. ``sub`` names the notice's subject: when it
is a single IP, hash, URL or domain (an intel indicator, the Malware Hash Registry's
link) it becomes that observable.

Zeek gives notices no severity: ``severity`` sets the default (medium), and
``severities`` maps notice types to their own, over a few built-in ones. Notices carry
no id either: the id is a fingerprint of what identifies one notice (time, connection,
type, message, subject, addresses), so the same notice from notice.log and
notice_alarm.log, or shipped twice, is one event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    SeverityName,
    fingerprint,
    has,
    raw_json,
    text,
    timestamp,
)
from integrations.detectors.network import add_host, add_url, url_host
from pipeline.observables import hash_type
from pipeline.plugins import ParsedEvent, detectors

# notice types Zeek ships whose weight is plain; a site's own go in the policy
SEVERITIES_BY_NOTE = {
    "TeamCymruMalwareHashRegistry::Match": "high",
    "Intel::Notice": "high",
    "HTTP::SQL_Injection_Attacker": "high",
    "SSH::Password_Guessing": "medium",
    "FTP::Bruteforcing": "medium",
    "Scan::Port_Scan": "low",
    "Scan::Address_Scan": "low",
    "SSL::Invalid_Server_Cert": "low",
    "SSL::Certificate_Expired": "low",
}
_IDENTITY = ("ts", "uid", "fuid", "note", "msg", "sub", "src", "dst", "id.orig_h", "id.resp_h")
_NOTICE_PATHS = {"notice", "notice_alarm"}
_ATTRIBUTE = re.compile(r"^[A-Za-z.]+=")  # "CN=www.example.com,O=…": a certificate subject
_LINK_NOTES = {"TeamCymruMalwareHashRegistry::Match"}  # their sub links to a lookup site


def _notices(document: Any) -> list[Any]:
    items = document if isinstance(document, list) else [document]
    # {"notice": {…}}: the Kafka writer's tag_json wrapping
    return [
        item["notice"] if isinstance(item, Mapping) and set(item) == {"notice"} else item
        for item in items
    ]


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"severity": "medium", "severities": {"Scan::Port_Scan": "medium"}}]
        },
    )

    severity: SeverityName = "medium"  # of a notice type not in severities
    # notice type → severity, over the built-in SEVERITIES_BY_NOTE
    severities: dict[str, SeverityName] = Field(default_factory=dict)


@detectors.register("zeek")
class ZeekDetector(JSONDetector):
    name = "zeek"
    content_types = ("application/json", "application/x-ndjson", "text/plain")
    # what a log-file tail passes on when its policy names no pattern: notices only
    line_pattern = r'"note":\s*"'
    Options = Options

    def __init__(
        self, *, severity: str = "medium", severities: Mapping[str, str] | None = None
    ) -> None:
        self.severity = severity
        self.severities = {**SEVERITIES_BY_NOTE, **dict(severities or {})}

    label = "Zeek"
    expects = "a notice.log record (note)"

    def records(self, document: Any) -> list[Any]:
        return _notices(document)

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return text(record.get("note")) is not None

    def skip(self, record: Mapping[str, Any]) -> str | None:
        path = text(record.get("_path"))
        if path is not None and path not in _NOTICE_PATHS:
            return f"Zeek {path[:40]!r} log record: not a notice"
        if text(record.get("note")) is None and has(record, "ts", "uid"):
            return "Zeek log record without a note: not a notice"
        return None

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        note = text(record.get("note")) or "notice"
        message = text(record.get("msg"))
        found = ObservableBuilder()
        found.ip(record.get("id.orig_h"), "src")
        found.ip(record.get("id.resp_h"), "dst")
        found.ip(record.get("src"), "src")
        found.ip(record.get("dst"), "dst")
        self._subject(found, note, text(record.get("sub")))
        return ParsedEvent(
            external_id=fingerprint({key: record.get(key) for key in _IDENTITY}),
            title=f"{note}: {message}" if message else note,
            severity=self.severities.get(note, self.severity),
            occurred_at=timestamp(record.get("ts")),
            observables=found.build(),
            raw=raw_json(record),
        )

    @staticmethod
    def _subject(found: ObservableBuilder, note: str, sub: str | None) -> None:
        """``sub`` as an observable when it is one indicator (not a sentence, a
        certificate subject or a list of sampled hosts)."""
        if not sub or any(c.isspace() for c in sub) or _ATTRIBUTE.match(sub):
            return
        if hash_type(sub):
            found.hash(sub)
        elif "/" in sub:
            add_url(found, sub, domain=note not in _LINK_NOTES)
            host = url_host(sub) or ""
            for part in sub.split("?", 1)[0].split("/"):
                if hash_type(part) and part != host:
                    found.hash(part)  # e.g. the hash in the Malware Hash Registry's link
        else:
            add_host(found, sub)
