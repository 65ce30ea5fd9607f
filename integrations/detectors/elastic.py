"""The ``elastic`` detector: Elastic Security detection alerts.

Kibana's Webhook connector posts the body its rule action writes; the usual ones are the
alerts themselves (``{{context.alerts}}``, a JSON array of alert documents), an object
holding them (``{"rule": {…}, "alerts": [{{context.alerts}}]}`` or ``{"context":
{"alerts": […]}}``), or the answer of a search of ``.alerts-security.alerts-*``
(``{"hits": {"hits": [{"_id", "_source": alert}]}}``). An alert document, nested or with
dotted keys as exports flatten it::

    {"@timestamp": "…", "kibana.alert.uuid": "…", "kibana.alert.rule.name": "…",
     "kibana.alert.severity": "high", "kibana.alert.risk_score": 73,
     "kibana.alert.reason": "process event with process powershell.exe, …",
     "kibana.alert.original_time": "…", "host": {"name", "hostname", "ip": […]},
     "user": {"name", "domain", "email"}, "source": {"ip"}, "destination": {"ip",
     "domain"}, "process": {"name", "executable", "hash": {"sha256"}, "parent": {…}},
     "file": {"path", "hash": {…}}, "dns": {"question": {"name"}}, "url": {"full"}}

The 7.x signals (``signal.rule.name``, ``signal.rule.severity``, ``signal.original_time``)
are read where the 8.x fields are absent. Observables are the Elastic Common Schema
fields (``ecs_observables``, used by other detectors that write ECS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    raw_json,
    severity,
    severity_from_number,
    text,
    timestamp,
)
from integrations.detectors.extract import (
    STANDARD,
    account,
    add_ips,
    add_process,
    field,
    ident,
    objects,
    values,
)
from integrations.detectors.network import add_host, add_url
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

RISK = ((99, "critical"), (73, "high"), (47, "medium"), (21, "low"), (float("-inf"), "low"))
HASHES = ("hash.sha256", "hash.sha1", "hash.md5")


@detectors.register("elastic")
class ElasticDetector(JSONDetector):
    name = "elastic"
    label = "Elastic Security"
    expects = "a detection alert (kibana.alert.rule.name or kibana.alert.uuid; signal.rule in 7.x)"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, list):
            return [record for item in document for record in self.records(item)]
        if not isinstance(document, Mapping):
            return [document]
        hits = field(document, "hits.hits")
        if isinstance(document.get("hits"), Mapping):
            if not isinstance(hits, list):
                return []  # a search that found nothing
            return [{"_id": hit.get("_id"), **hit["_source"]} for hit in _sourced(hits)]
        for path in ("alerts", "context.alerts"):
            alerts = field(document, path)
            if isinstance(alerts, list):
                return alerts
        return [document]

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return any(
            field(record, key) is not None
            for key in ("kibana.alert.rule.name", "kibana.alert.uuid", "signal.rule.name")
        )

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        name = text(field(record, "kibana.alert.rule.name")) or text(
            field(record, "signal.rule.name")
        )
        word = text(field(record, "kibana.alert.severity")) or text(
            field(record, "signal.rule.severity")
        )
        normalised, vendor = severity(word, STANDARD)
        if word is None:
            risk = field(record, "kibana.alert.risk_score") or field(
                record, "signal.rule.risk_score"
            )
            normalised, vendor = severity_from_number(risk, RISK)
        key = field(record, "kibana.alert.uuid") or record.get("_id")
        return ParsedEvent(
            external_id=ident(record, key),
            title=name or f"Elastic alert {text(key) or ''}".strip(),
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(field(record, "kibana.alert.original_time"))
            or timestamp(field(record, "signal.original_time"))
            or timestamp(record.get("@timestamp")),
            observables=ecs_observables(record),
            raw=raw_json(record),
        )


def _sourced(hits: list[Any]) -> list[Mapping[str, Any]]:
    found = [hit for hit in objects(hits) if isinstance(hit.get("_source"), Mapping)]
    if len(found) != len(hits):
        raise ParseError("a search hit without a _source")
    return found


def ecs_observables(record: Mapping[str, Any]) -> Observables:
    """The users, hosts, addresses, hashes, domains, URLs, processes and files of an
    Elastic Common Schema document."""
    found = ObservableBuilder()
    for prefix in ("user", "user.target", "user.effective", "source.user", "destination.user"):
        found.user(account(field(record, f"{prefix}.name"), field(record, f"{prefix}.domain")))
        found.user(field(record, f"{prefix}.email"))
    found.host(field(record, "host.name") or field(record, "host.hostname"))
    found.observer(field(record, "observer.hostname") or field(record, "observer.name"))
    add_ips(found, field(record, "host.ip"))
    for prefix, role in (("source", "src"), ("client", "src"), ("destination", "dst")):
        add_ips(found, field(record, f"{prefix}.ip"), role)
        add_host(found, field(record, f"{prefix}.domain"))
    add_ips(found, field(record, "server.ip"), "dst")
    add_ips(found, field(record, "related.ip"))
    for user in values(field(record, "related.user")):
        found.user(user)
    for digest in values(field(record, "related.hash")):
        found.hash(digest)
    for name in values(field(record, "related.hosts")):
        found.host(name)
    for prefix in ("process", "process.parent", "process.parent.parent"):
        add_process(
            found,
            record,
            name=f"{prefix}.name",
            path=f"{prefix}.executable",
            hashes=tuple(f"{prefix}.{h}" for h in HASHES),
        )
    for prefix in ("file", "dll"):
        found.file(field(record, f"{prefix}.path"))
        for key in HASHES:
            found.hash(field(record, f"{prefix}.{key}"))
    add_host(found, field(record, "dns.question.name"))
    add_host(found, field(record, "url.domain"))
    add_url(found, field(record, "url.full") or field(record, "url.original"))
    for key in ("email.to.address",):  # the recipients: the sender is rarely ours
        for address in values(field(record, key)):
            found.user(address)
    for indicator in objects(field(record, "threat.enrichments")):
        add_ips(found, field(indicator, "indicator.ip"))
        add_host(found, field(indicator, "indicator.url.domain"))
    return found.build()
