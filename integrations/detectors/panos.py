"""The ``panos`` detector: THREAT logs from Palo Alto Networks firewalls (PAN-OS), in
the default syslog CSV format.

A firewall's syslog server profile sends one log per line, the CSV after a syslog
header (BSD or RFC 5424) or alone when a collector has stripped it::

    <14>Apr 10 04:39:55 PA-VM 1,2012/04/10 04:39:55,0011C103117,THREAT,url,1,
        2012/04/10 04:39:53,192.168.0.2,204.232.231.46,0.0.0.0,0.0.0.0,rule1,crusher,,
        web-browsing,vsys1,trust,untrust,ethernet1/2,ethernet1/1,forwardAll,,11281,1,
        51059,80,0,0,0x208000,tcp,alert,"www.hackthissite.org/",(9999),hacking,
        informational,client-to-server,1234,0x0,…

(one line in reality). Fields are read by their place in PAN-OS's documented THREAT
format, so older releases, which stop earlier, and newer ones, which add fields at the
end, both work; a field quoted because it holds a comma is read whole. Times may be
PAN-OS's ``YYYY/MM/DD hh:mm:ss`` (the firewall's local time: ``timezone`` names its zone)
or ISO 8601 as Strata Logging Service forwards them; the High Resolution Timestamp of
PAN-OS 10+ is preferred when present.

Lines of other log types (TRAFFIC, SYSTEM, CONFIG, …) and anything that is not a PAN-OS
log are skipped; a delivery without a THREAT log is a ParseError. The id is the
firewall's serial number and the log's sequence number, unique per firewall.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from integrations.detectors import panos_kv as key_values
from integrations.detectors.common import (
    ObservableBuilder,
    fingerprint,
    log_lines,
    present,
    severity,
    timestamp,
)
from integrations.detectors.network import (
    TimeZoneName,
    add_host,
    add_url,
    host_kind,
    url_host,
    zone,
)
from pipeline.errors import ParseError
from pipeline.plugins import DetectorBase, ParsedEvent, counted, detectors

# places in the THREAT format (PAN-OS syslog field descriptions)
RECEIVE_TIME, SERIAL, TYPE, SUBTYPE, GENERATED_TIME = 1, 2, 3, 4, 6
SOURCE, DESTINATION, NAT_SOURCE, NAT_DESTINATION, SOURCE_USER, DESTINATION_USER = (
    7,
    8,
    9,
    10,
    12,
    13,
)
MISC, THREAT_ID, CATEGORY, SEVERITY, SEQUENCE = 31, 32, 33, 34, 36
FILE_DIGEST, XFF, RECIPIENT, DEVICE_NAME, XFF_ADDRESS = 43, 48, 52, 59, 79
SOURCE_HOSTNAME, DESTINATION_HOSTNAME, HIGH_RESOLUTION_TIME = 86, 94, 107
MINIMUM_FIELDS = SEVERITY + 1

SEVERITIES = {s: s for s in ("informational", "low", "medium", "high", "critical")}
# subtypes whose URL/Filename field names a file
FILE_SUBTYPES = {"virus", "wildfire", "wildfire-virus", "ml-virus", "file", "data"}
_START = re.compile(
    r"(?:^|(?<=[\s>]))[^\s,]*,"
    r"(?:\d{4}/\d{1,2}/\d{1,2} \d{1,2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T[^,\s]*),"
    r"[^,]*,(?P<type>[A-Z]+),"
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"timezone": "Europe/Paris"}]}
    )

    timezone: TimeZoneName = "UTC"  # of the firewall, which logs local time


@detectors.register("panos")
class PanOSDetector(DetectorBase):
    name = "panos"
    content_types = ("text/plain",)
    # what a log-file tail passes on when its policy names no pattern: THREAT logs
    line_pattern = r",THREAT,"
    Options = Options

    def __init__(self, *, timezone: str = "UTC") -> None:
        self.zone = zone(timezone)

    def parse(self, body: bytes) -> list[ParsedEvent]:
        events = []
        for number, line in enumerate(counted(log_lines(body)), 1):
            try:
                event = self.parse_line(line) or key_values.parse_line(line, self._time)
            except ParseError as exc:
                raise ParseError(f"panos: line {number}: {exc}") from None
            if event is not None:
                events.append(event)
        if not events:
            raise ParseError("panos: the delivery holds no THREAT log")
        return events

    def parse_line(self, line: str) -> ParsedEvent | None:
        """The event for one THREAT log line; None for any other line."""
        line = line.strip().lstrip("\ufeff")
        start = _START.search(line)
        if start is None or start["type"] != "THREAT":
            return None
        log = line[start.start() :]  # without the syslog header, which relays rewrite
        try:
            fields = next(csv.reader([log]))
        except csv.Error as exc:
            raise ParseError(f"unreadable CSV ({exc})") from None
        if len(fields) < MINIMUM_FIELDS:
            raise ParseError(f"a THREAT log of {len(fields)} fields ({MINIMUM_FIELDS} or more)")

        def field(index: int) -> str | None:
            return present(fields[index]) if index < len(fields) else None

        subtype = field(SUBTYPE) or "threat"
        threat_name, threat_id = key_values.threat(field(THREAT_ID))
        misc, category = field(MISC), field(CATEGORY)
        what = threat_name or (f"{misc} ({category})" if misc and category else misc or category)
        what = what or (f"threat {threat_id}" if threat_id else "threat")
        normalised, vendor = severity(field(SEVERITY), SEVERITIES, default="medium")
        serial, sequence = field(SERIAL), field(SEQUENCE)
        found = ObservableBuilder()
        found.ip(field(SOURCE), "src")
        found.ip(field(DESTINATION), "dst")
        found.observer(field(DEVICE_NAME))  # the firewall that logged it
        # NAT addresses are 0.0.0.0 when the session was not translated. The translated
        # destination is the server behind the firewall, a party; the translated source
        # is the firewall's own address, shared by every session it carries: an observer
        found.ip(field(NAT_DESTINATION), "dst")
        found.observer(field(NAT_SOURCE))
        found.ip(field(XFF), "src")
        found.ip(field(XFF_ADDRESS), "src")
        found.user(field(SOURCE_USER))
        found.user(field(DESTINATION_USER))
        found.host(field(SOURCE_HOSTNAME))
        found.host(field(DESTINATION_HOSTNAME))
        found.user(field(RECIPIENT))  # of a WildFire e-mail link
        found.hash(field(FILE_DIGEST))
        _misc(found, subtype, misc)
        return ParsedEvent(
            external_id=_identity(serial, sequence) or fingerprint(log),
            title=f"PAN-OS {subtype}: {what}",
            severity=normalised,
            vendor_severity=vendor[:64] if vendor else None,
            occurred_at=self._time(field(HIGH_RESOLUTION_TIME))
            or self._time(field(GENERATED_TIME))
            or self._time(field(RECEIVE_TIME)),
            observables=found.build(),
            raw=line,
        )

    def _time(self, value: str | None) -> datetime | None:
        if not value:
            return None
        if _ISO.match(value):
            return timestamp(value)
        try:
            local = datetime.strptime(value, "%Y/%m/%d %H:%M:%S")
            return local.replace(tzinfo=self.zone).astimezone(UTC)
        except (ValueError, OverflowError):  # not a time, or out of datetime's range
            return None


def _identity(serial: str | None, sequence: str | None) -> str | None:
    """The firewall's serial number and the log's sequence number, unique per log."""
    identity = f"{serial}:{sequence}" if serial and sequence else None
    return identity if identity and len(identity) <= 255 else None


def _misc(found: ObservableBuilder, subtype: str, misc: str | None) -> None:
    """The URL/Filename field: a file name for file-borne threats, the URL for URL
    filtering, and for the rest whichever it looks like."""
    if not misc:
        return
    if subtype.lower() in FILE_SUBTYPES:
        found.file(misc)
        return
    host = url_host(misc)
    if subtype.lower() == "url":
        add_url(found, misc)
    elif host and host_kind(host):
        if host == misc:
            add_host(found, host)  # a bare name, e.g. the query of a DNS threat
        else:
            add_url(found, misc)
    else:
        found.file(misc)
