"""The ``wazuh`` detector: Wazuh alerts.

Wazuh writes one alert per line to ``/var/ossec/logs/alerts/alerts.json`` (read by the
``logfile`` source, or shipped as JSON Lines), and passes the same object to an
integration script (``<integration>`` with ``<alert_format>json</alert_format>``) that
posts it to Fido. The Indexer's answer to a search (``{"hits": {"hits": [{"_source":
alert}]}}``) is read too. An alert::

    {"timestamp": "2026-03-06T09:14:02.118+0000", "id": "1772788442.1184321",
     "rule": {"level": 10, "description": "…", "id": "5712", "groups": […],
              "mitre": {…}},
     "agent": {"id": "004", "name": "web-01", "ip": "10.10.4.21"},
     "manager": {"name": "wazuh-manager"}, "decoder": {"name": "sshd"},
     "data": {"srcip", "srcuser", "dstuser", "dstip", "url", "win": {"eventdata":
              {"targetUserName", "targetDomainName", "ipAddress", "image", "hashes", …}},
              "virustotal": {"source": {"file", "md5", "sha1"}}, …},
     "syscheck": {"path", "sha256_after", "uname_after", …},
     "predecoder": {"hostname"}, "location": "/var/log/auth.log", "full_log": "…"}

Severity is the rule's level, 0–15, banded as Wazuh's documentation groups them: 13–15
critical (high-importance events), 10–12 high, 7–9 medium, 4–6 low, 0–3
informational. The id is the alert's ``id``. Observables: the agent (its name as host,
its address), the decoded fields of ``data`` (``srcip``/``dstip``, ``srcuser``/
``dstuser``, ``url``, Windows event data and Sysmon's ``hashes``), the file integrity
monitoring's path, hashes and owner, and VirusTotal's file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    raw_json,
    severity_from_number,
    text,
    timestamp,
)
from integrations.detectors.extract import (
    account,
    add_ips,
    add_machine,
    add_process,
    field,
    ident,
    mapping,
)
from integrations.detectors.network import add_host, add_url
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

BANDS = (
    (13, "critical"),
    (10, "high"),
    (7, "medium"),
    (4, "low"),
    (float("-inf"), "informational"),
)


@detectors.register("wazuh")
class WazuhDetector(JSONDetector):
    name = "wazuh"
    label = "Wazuh"
    expects = "an alert (rule with level and description, and agent or manager)"
    content_types = ("application/json", "application/x-ndjson", "text/plain")

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, Mapping) and isinstance(document.get("hits"), Mapping):
            hits = field(document, "hits.hits")
            return [mapping(hit).get("_source") for hit in hits] if isinstance(hits, list) else []
        return super().records(document)

    def recognises(self, record: Mapping[str, Any]) -> bool:
        rule = mapping(record.get("rule"))
        return (
            "level" in rule
            and "description" in rule
            and (
                isinstance(record.get("agent"), Mapping)
                or isinstance(record.get("manager"), Mapping)
            )
        )

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        rule = mapping(record.get("rule"))
        normalised, vendor = severity_from_number(rule.get("level"), BANDS)
        description = text(rule.get("description"))
        rule_id = text(rule.get("id"))
        return ParsedEvent(
            external_id=ident(record, record.get("id")),
            title=description or f"Wazuh rule {rule_id}",
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(record.get("timestamp")) or timestamp(record.get("@timestamp")),
            observables=observables(record),
            raw=raw_json(record),
        )


def observables(alert: Mapping[str, Any]) -> Observables:
    found = ObservableBuilder()
    agent = mapping(alert.get("agent"))
    if text(agent.get("id")) != "000":  # 000 is the manager itself
        found.host(agent.get("name"))
        found.ip(agent.get("ip"))
    else:
        found.observer(agent.get("name"))
    found.observer(field(alert, "manager.name"))  # the Wazuh manager that raised it
    found.host(field(alert, "predecoder.hostname"))
    data = mapping(alert.get("data"))
    for key in ("srcuser", "dstuser", "user", "src_user", "dst_user", "username"):
        found.user(data.get(key))
    add_ips(found, data.get("srcip"), "src")
    add_ips(found, data.get("src_ip"), "src")
    add_ips(found, data.get("dstip"), "dst")
    add_ips(found, data.get("dst_ip"), "dst")
    add_machine(found, data.get("hostname"))
    add_url(found, data.get("url"))
    add_host(found, data.get("domain"))
    _windows(found, mapping(field(data, "win.eventdata")))
    _audit(found, mapping(data.get("audit")))
    source = mapping(field(data, "virustotal.source"))
    for key in ("sha1", "md5", "sha256"):
        found.hash(source.get(key))
    found.file(source.get("file"))
    syscheck = mapping(alert.get("syscheck"))
    found.file(syscheck.get("path"))
    for key in ("sha256_after", "sha1_after", "md5_after"):
        found.hash(syscheck.get(key))
    found.user(syscheck.get("uname_after"))
    found.user(field(syscheck, "audit.login_user.name"))
    return found.build()


def _windows(found: ObservableBuilder, event: Mapping[str, Any]) -> None:
    """Windows Security and Sysmon event data, as Wazuh decodes it (camelCase)."""
    for name, domain in (
        ("targetUserName", "targetDomainName"),
        ("subjectUserName", "subjectDomainName"),
        ("user", None),
    ):
        found.user(account(event.get(name), event.get(domain) if domain else None))
    add_ips(found, event.get("ipAddress"), "src")
    add_ips(found, event.get("sourceIp"), "src")
    add_ips(found, event.get("destinationIp"), "dst")
    add_machine(found, event.get("workstationName"))
    add_host(found, event.get("queryName"))
    add_host(found, event.get("destinationHostname"))
    add_process(found, event, name="image")
    add_process(found, event, name="parentImage")
    found.file(event.get("targetFilename"))
    for part in (text(event.get("hashes")) or "").split(","):  # "SHA256=…,MD5=…"
        found.hash(part.partition("=")[2])


def _audit(found: ObservableBuilder, audit: Mapping[str, Any]) -> None:
    """Linux audit (auditd) records: the acting and the effective account, the program."""
    found.user(field(audit, "login_user.name") or audit.get("auid_name"))
    found.user(field(audit, "effective_user.name"))
    found.file(audit.get("exe"))
