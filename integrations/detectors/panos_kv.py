"""PAN-OS THREAT logs in the key-value layouts a firewall's custom log format writes for
SIEMs: CEF (ArcSight) and LEEF (QRadar), as Palo Alto Networks documents them::

    CEF:0|Palo Alto Networks|PAN-OS|10.2.3|virus|THREAT|4|rt=Mar 05 2026 13:21:07 GMT
      deviceExternalId=013201012345 src=10.1.4.22 dst=203.0.113.50
      sourceTranslatedAddress=198.51.100.2 suser=corp\\jsmith request=invoice.zip
      cat=Virus/Win32.WGeneric(495712993) externalId=7294836177 dvchost=PA-3220-edge …

    LEEF:1.0|Palo Alto Networks|PAN-OS Syslog Integration|10.2.3|495712993|
      ReceiveTime=2026/03/05 14:21:07|SerialNumber=013201012345|cat=THREAT|Subtype=virus|
      src=10.1.4.22|dst=203.0.113.50|srcPostNAT=198.51.100.2|usrName=corp\\jsmith|
      Severity=medium|sequence=7294836177|DeviceName=PA-3220-edge|…

(each one line, after any syslog header). The same event as the CSV layout's: the id is
the serial number and the sequence number, so a log sent in two layouts is one event. As
in the CSV layout, the firewall's own name and its translated (NAT) source address are the
alert's observers, never hosts or IPs of an incident: one egress address or one firewall
would join every incident; the translated destination, the server behind the firewall,
is a destination IP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from integrations.detectors.common import ObservableBuilder, fingerprint, present, severity
from integrations.detectors.network import add_host, add_url, host_kind, url_host
from pipeline.plugins import ParsedEvent

_CEF = re.compile(r"CEF:\d+\|(?:[^|\\]|\\.)*\|(?:[^|\\]|\\.)*\|[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|")
_LEEF = re.compile(r"LEEF:[\d.]+\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|(?:x?[0-9a-fA-F]{1,2}\|)?")
_CEF_PAIR = re.compile(r"(\w+)=((?:[^\\]|\\.)*?)(?=\s+\w+=|\s*$)")
# PAN-OS's $number-of-severity: 1 informational … 5 critical
NUMBERS = {"1": "informational", "2": "low", "3": "medium", "4": "high", "5": "critical"}
WORDS = {s: s for s in ("informational", "low", "medium", "high", "critical")}
FILE_SUBTYPES = {"virus", "wildfire", "wildfire-virus", "ml-virus", "file", "data"}
_THREAT = re.compile(r"^(?P<name>.*?)\s*\((?P<id>\d+)\)$")
_CEF_TIMES = ("%b %d %Y %H:%M:%S %Z", "%b %d %Y %H:%M:%S")


def parse_line(
    line: str, local_time: Callable[[str | None], datetime | None]
) -> ParsedEvent | None:
    """The event of one CEF or LEEF THREAT log; None for any other line."""
    cef, leef = _CEF.search(line), _LEEF.search(line)
    if cef is not None:
        subtype, kind, number = cef.group(1), cef.group(2), cef.group(3)
        pairs = {k: _unescape(v) for k, v in _CEF_PAIR.findall(line[cef.end() :])}
        normalised, vendor = severity(number, NUMBERS)
    elif leef is not None:
        rest = line[leef.end() :]
        separator = "\t" if "\t" in rest else "|"
        pairs = dict(item.split("=", 1) for item in rest.split(separator) if "=" in item)
        kind, subtype = pairs.get("cat", ""), pairs.get("Subtype", "")
        normalised, vendor = severity(pairs.get("Severity"), WORDS)
    else:
        return None
    if kind.strip().upper() != "THREAT":
        return None

    def value(*keys: str) -> str | None:
        for key in keys:
            found = present(pairs.get(key))
            if found is not None:
                return found
        return None

    found = ObservableBuilder()
    found.ip(value("src"), "src")
    found.ip(value("dst"), "dst")
    found.observer(value("dvchost", "DeviceName"))  # the firewall that logged it
    found.ip(value("destinationTranslatedAddress", "dstPostNAT"), "dst")  # as in the CSV
    found.observer(value("sourceTranslatedAddress", "srcPostNAT"))
    found.user(value("suser", "SrcUser", "usrName"))
    found.user(value("duser", "DstUser"))
    found.host(value("shost", "SrcHostname"))
    found.host(value("dhost", "DstHostname"))
    found.hash(value("fileHash", "FileDigest", "filehash"))
    name, number = threat(value("cat", "ThreatID") if cef is not None else value("ThreatID"))
    misc = value("request", "Miscellaneous", "URL")
    _misc(found, subtype, misc)
    serial, sequence = value("deviceExternalId", "SerialNumber"), value("externalId", "sequence")
    what = name or misc or (f"threat {number}" if number else "threat")
    return ParsedEvent(
        external_id=f"{serial}:{sequence}" if serial and sequence else fingerprint(line),
        title=f"PAN-OS {subtype or 'threat'}: {what}",
        severity=normalised,
        vendor_severity=vendor[:64] if vendor else None,
        occurred_at=_cef_time(value("rt", "devTime")) or local_time(value("ReceiveTime")),
        observables=found.build(),
        raw=line,
    )


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value).strip()


def _cef_time(value: str | None) -> datetime | None:
    if not value:
        return None
    if value.isdigit():  # epoch milliseconds
        try:
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    for form in _CEF_TIMES:
        try:
            return datetime.strptime(value.replace(" UTC", " GMT"), form).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _misc(found: ObservableBuilder, subtype: str, misc: str | None) -> None:
    """The URL/Filename field, read as the CSV layout reads it."""
    if not misc:
        return
    host = url_host(misc)
    if subtype.lower() in FILE_SUBTYPES or not (host and host_kind(host)):
        found.file(misc)
    elif host == misc:
        add_host(found, host)  # a bare name, e.g. the query of a DNS threat
    else:
        add_url(found, misc)


def threat(value: str | None) -> tuple[str | None, str | None]:
    """("Eicar Test File", "39040") from "Eicar Test File(39040)"; the name is absent
    for URL logs ("(9999)") and for logs giving the id alone."""
    if not value:
        return None, None
    match = _THREAT.match(value)
    if match:
        return match["name"] or None, match["id"]
    return (None, value) if value.isdecimal() else (value, None)
