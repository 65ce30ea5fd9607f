"""The ``fail2ban`` detector: addresses fail2ban banned, from its log or a notification.

fail2ban has no webhook of its own; a ban reaches Fido as a line of its log (tailed with
the ``logfile`` source, ideally with ``pattern: "\\] (Restore )?Ban "``)::

    2026-11-28 01:02:03,456 fail2ban.actions        [123]: NOTICE  [sshd] Ban 203.0.113.5
    2026-11-28 01:02:09,001 fail2ban.actions        [123]: NOTICE  [sshd] Restore Ban 203.0.113.5
    Nov 28 01:02:03 gw-1 fail2ban.actions[123]: NOTICE [sshd] Ban 203.0.113.5   (to syslog)

or as JSON from a custom action whose ``actionban`` posts or appends
``{"jail": "<name>", "ip": "<ip>", "failures": <failures>, "time": <time>}`` (a document,
an array or JSON Lines). ``Unban``, ``Found`` and every other line are skipped; a delivery
without a ban is a ParseError. The banned address is the event's source IP; the id is a
fingerprint of (jail, ip, time), so the same ban delivered twice is one alert. fail2ban
writes local time without a zone: ``timezone`` names the zone of its host (UTC by default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from integrations.detectors.common import (
    ObservableBuilder,
    SeverityName,
    fingerprint,
    json_documents,
    log_lines,
    raw_json,
    text,
    timestamp,
)
from integrations.detectors.network import TimeZoneName, syslog_time, zone
from pipeline.errors import ParseError
from pipeline.plugins import DetectorBase, ParsedEvent, counted, detectors

_BAN = re.compile(
    r"fail2ban\.\w+\s*(?:\[\d+\])?:\s*(?:[A-Z]+\s+)?"
    r"\[(?P<jail>[^\]\s]+)\]\s+(?P<verb>Restore Ban|Ban)\s+(?P<ip>\S+)\s*$"
)
_TIME = re.compile(
    r"^(?:(?P<time>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[,.](?P<fraction>\d+))?"
    r"(?P<offset>Z|[+-]\d\d:\d\d)?"
    r"|(?P<bsd_time>[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d) )"
)


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"severity": "medium", "timezone": "Europe/Paris"}]},
    )

    severity: SeverityName = "medium"  # of every ban
    timezone: TimeZoneName = "UTC"  # of fail2ban's host, which logs local time


@detectors.register("fail2ban")
class Fail2banDetector(DetectorBase):
    name = "fail2ban"
    content_types = ("text/plain", "application/json")
    # what a log-file tail passes on when its policy names no pattern: bans (and JSON)
    line_pattern = r"\] (Restore )?Ban |^\s*\{"
    Options = Options

    def __init__(self, *, severity: str = "medium", timezone: str = "UTC") -> None:
        self.severity = severity
        self.zone = zone(timezone)

    def parse(self, body: bytes) -> list[ParsedEvent]:
        if body.lstrip()[:1] in (b"{", b"["):
            return self._parse_json(body)
        events = [event for line in counted(log_lines(body)) if (event := self.parse_line(line))]
        if not events:
            raise ParseError("fail2ban: the delivery holds no ban")
        return events

    def parse_line(self, line: str) -> ParsedEvent | None:
        """The event for one ``Ban`` / ``Restore Ban`` log line; None for any other line."""
        line = line.strip()
        match = _BAN.search(line)
        if match is None:
            return None
        occurred = self._log_time(line)
        when = occurred.isoformat() if occurred else line[: match.start()].strip()
        restored = match["verb"] == "Restore Ban"
        return self._event(
            jail=match["jail"],
            ip=match["ip"],
            when=when,
            occurred=occurred,
            raw=line,
            restored=restored,
        )

    def _parse_json(self, body: bytes) -> list[ParsedEvent]:
        documents = json_documents(body)
        records: list[Any] = []
        for document in documents:
            records.extend(document if isinstance(document, list) else [document])
        if not records:
            raise ParseError("fail2ban: the delivery holds no ban")
        events = []
        for index, record in enumerate(counted(records)):
            where = f"alert {index}: " if len(records) > 1 else ""
            if not isinstance(record, Mapping):
                raise ParseError(f"fail2ban: {where}not a JSON object")
            jail, ip = text(record.get("jail")), text(record.get("ip"))
            if jail is None or ip is None:
                raise ParseError(f"fail2ban: {where}'jail' and 'ip' are required")
            occurred = timestamp(record.get("time"))
            when = occurred.isoformat() if occurred else (text(record.get("time")) or "")
            alone = len(documents) == 1 and documents[0] is record  # kept byte for byte
            raw = body.decode("utf-8-sig").strip() if alone else raw_json(record)
            failures = text(record.get("failures"))
            events.append(
                self._event(
                    jail=jail, ip=ip, when=when, occurred=occurred, raw=raw, failures=failures
                )
            )
        return events

    def _event(
        self,
        *,
        jail: str,
        ip: str,
        when: str,
        occurred: datetime | None,
        raw: str,
        failures: str | None = None,
        restored: bool = False,
    ) -> ParsedEvent:
        found = ObservableBuilder()
        found.ip(ip, role="src")
        verb = "ban restored for" if restored else "banned"
        after = f" after {failures} failures" if failures else ""
        return ParsedEvent(
            external_id=fingerprint([jail, ip, when]),
            title=f"fail2ban: {verb} {ip} in jail {jail}{after}",
            severity=self.severity,
            raw=raw,
            observables=found.build(),
            occurred_at=occurred,
        )

    def _log_time(self, line: str) -> datetime | None:
        match = _TIME.match(line)
        if match is None:
            return None
        if match["bsd_time"]:  # through syslog, which leaves out the year
            try:
                return syslog_time(match["bsd_time"], self.zone)
            except ValueError:
                return None
        fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
        try:
            moment = datetime.fromisoformat(
                match["time"].replace("T", " ")
                + "."
                + fraction
                + (match["offset"] or "").replace("Z", "+00:00")
            )
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(UTC)
