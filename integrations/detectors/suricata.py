"""The ``suricata`` detector: alerts from Suricata's EVE JSON log.

Suricata writes one JSON record per line to ``eve.json``; a log shipper (or the
``logfile`` source) passes them on, one record, an array or JSON Lines per delivery::

    {"timestamp": "2017-04-07T22:24:37.251547+0100", "flow_id": 586497171462735,
     "event_type": "alert", "src_ip": "192.168.2.14", "src_port": 50096,
     "dest_ip": "209.53.113.5", "dest_port": 80, "proto": "TCP",
     "alert": {"action": "allowed", "gid": 1, "signature_id": 2018358, "rev": 10,
               "signature": "ET HUNTING …", "category": "Potentially Bad Traffic",
               "severity": 2},
     "http": {"hostname": "example.com", "url": "/x.php"}, "app_proto": "http"}

Only ``alert`` records are read; the metadata records an EVE log interleaves with them
(flow, dns, http, tls, fileinfo, stats, anomaly, …) are skipped with a reason, which the
webhook's 202 answers (``"skipped": [{"reason": "EVE 'dns' record: not an alert",
"count": 3}]``); a record that is no EVE record at all is refused. Lines written
through syslog (``filetype: syslog``, a ``prefix`` such as ``@cee:``) are read from their
first ``{``.

The alert's severity is the rule's priority: 1 = high, 2 = medium, 3 = low, 4 and above
informational. The id joins ``flow_id``, the signature id and the timestamp, so the same
alert shipped twice is one event. The application-layer metadata of the alert gives the
domains (``http.hostname``, ``tls.sni``, DNS query names, in the EVE formats of
Suricata 6, 7 and 8), the URL, the files' names and hashes, the accounts SMB (NTLMSSP),
RDP and Kerberos sessions name. The sensor's own name (``host``, its ``sensor-name``) is
kept as the alert's observer, shown but never a host: every alert it raises would share
it, and incidents join on a shared host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    dig,
    fingerprint,
    raw_json,
    severity,
    text,
    timestamp,
)
from integrations.detectors.extract import account, mapping
from integrations.detectors.network import add_host, add_url
from pipeline.errors import ParseError
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = {"1": "high", "2": "medium", "3": "low"}
# the record types of Suricata 6-8's EVE log (outputs.eve-log.types)
EVE_TYPES = frozenset(
    "alert anomaly arp bittorrent-dht dcerpc dhcp dnp3 dns drop enip files fileinfo flow frame "
    "ftp ftp_data http http2 ike ikev2 krb5 ldap modbus mqtt netflow nfs pgsql pop3 quic rdp rfb "
    "sip smb smtp snmp ssh stats tftp tls websocket".split()
)


def _from_first_brace(body: bytes) -> bytes:
    """EVE lines sent through syslog carry a header (and perhaps ``@cee:``) before the
    JSON: keep each line from its first ``{``."""
    lines = []
    for line in body.splitlines():
        start = line.find(b"{")
        lines.append(line[start:] if start > 0 else line)
    return b"\n".join(lines)


@detectors.register("suricata")
class SuricataDetector(JSONDetector):
    name = "suricata"
    content_types = ("application/json", "application/x-ndjson", "text/plain")
    # what a log-file tail passes on when its policy names no pattern: alerts only
    line_pattern = r'"event_type":\s*"alert"'

    def parse(self, body: bytes) -> list[ParsedEvent]:
        if body.lstrip()[:1] not in (b"{", b"["):
            body = _from_first_brace(body)
        return super().parse(body)

    label = "Suricata EVE"
    expects = f"an EVE record (an alert object, or event_type {', '.join(sorted(EVE_TYPES))})"

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return isinstance(record.get("alert"), Mapping) or record.get("event_type") == "alert"

    def skip(self, record: Mapping[str, Any]) -> str | None:
        kind = record.get("event_type")
        if kind in EVE_TYPES and kind != "alert":
            return f"EVE {kind!r} record: not an alert"
        return None

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        alert = record.get("alert")
        if not isinstance(alert, Mapping):
            raise ParseError("alert record has no 'alert' object")
        sid = text(alert.get("signature_id"))
        title = text(alert.get("signature"))
        if title is None:
            title = f"Suricata signature {sid}" if sid else "Suricata alert"
        normalised, vendor = severity(alert.get("severity"), SEVERITY, default="medium")
        if vendor is not None and vendor not in SEVERITY and vendor.isdecimal():
            normalised = "informational"  # priority 4 and beyond
        flow, when = text(record.get("flow_id")), text(record.get("timestamp"))
        external_id = f"{flow}:{sid}:{when}" if flow and sid and when else fingerprint(record)
        return ParsedEvent(
            external_id=external_id if len(external_id) <= 255 else fingerprint(record),
            title=title,
            severity=normalised,
            vendor_severity=vendor[:64] if vendor else None,
            occurred_at=timestamp(record.get("timestamp")),
            observables=self.observables(record, alert),
            raw=raw_json(record),
        )

    def observables(self, record: Mapping[str, Any], alert: Mapping[str, Any]) -> Any:
        found = ObservableBuilder()
        source, target = alert.get("source"), alert.get("target")
        if isinstance(source, Mapping) or isinstance(target, Mapping):
            # the rule's "target" keyword names attacker and victim, whichever way the
            # packet that matched was going
            found.ip(dig(alert, "source", "ip"), "src")
            found.ip(dig(alert, "target", "ip"), "dst")
            found.ip(record.get("src_ip"))
            found.ip(record.get("dest_ip"))
        else:
            found.ip(record.get("src_ip"), "src")
            found.ip(record.get("dest_ip"), "dst")
        http = record.get("http")
        if isinstance(http, Mapping):
            hostname, path = text(http.get("hostname")), text(http.get("url"))
            add_host(found, hostname)
            if path and "://" in path:
                add_url(found, path)
            elif hostname and path:
                port = text(http.get("http_port"))
                where = f"{hostname}:{port}" if port and port != "80" else hostname
                found.url(f"http://{where}{path if path.startswith('/') else '/' + path}")
        add_host(found, dig(record, "tls", "sni"))
        for key in ("smb", "rdp"):  # the account an SMB (NTLMSSP) or RDP session named
            session = mapping(record.get(key))
            ntlm = mapping(session.get("ntlmssp"))
            found.user(account(ntlm.get("user"), ntlm.get("domain")))
            found.user(dig(session, "client", "id") if key == "rdp" else None)
        found.user(dig(record, "krb5", "cname"))
        for name in _dns_names(record.get("dns")):
            add_host(found, name)
        files = record.get("files")
        for item in [record.get("fileinfo"), *(files if isinstance(files, list) else [])]:
            if isinstance(item, Mapping):
                found.file(item.get("filename"))
                for kind in ("md5", "sha1", "sha256"):
                    found.hash(item.get(kind))
        found.observer(record.get("host"))  # the sensor (its sensor-name), not a party
        return found.build()


def _dns_names(dns: Any) -> list[Any]:
    """Query names in the DNS formats Suricata has written: v1 (``rrname``), the alert
    metadata of 6/7 (``query: [{rrname}]``) and v3 of 8 (``queries: [{rrname}]``)."""
    if not isinstance(dns, Mapping):
        return []
    names = [dns.get("rrname")]
    for key in ("query", "queries"):
        entries = dns.get(key)
        if isinstance(entries, list):
            names.extend(e.get("rrname") for e in entries if isinstance(e, Mapping))
    return names
