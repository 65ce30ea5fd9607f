"""The ``splunk`` detector: Splunk alerts, as its webhook alert action sends them, and the
results of a saved search.

- The webhook alert action (``action.webhook``) posts one JSON object per trigger, with
  the first result row of the search::

      {"sid": "scheduler__admin__search__RMD5…_at_1772546520_42", "search_name": "…",
       "app": "search", "owner": "admin", "results_link": "https://splunk…/app/search/…",
       "result": {"_time": "1772546520", "host": "…", "src": "…", "user": "…", …}}

- The results of a search job or saved search (``GET /services/search/jobs/{sid}/results
  ?output_mode=json``): ``{"preview": false, "init_offset": 0, "messages": [], "fields":
  […], "results": [row, …]}``, one event per row.

A row's fields are the search's own; Fido reads the names of Splunk's Common Information
Model (``user``, ``src_user``, ``dest_user``, ``src``/``src_ip``, ``dest``/``dest_ip``,
``dvc``, ``host``, ``file_hash``, ``file_name``, ``url``, ``query``, …) and Enterprise
Security's notable events (``rule_name``, ``urgency``, ``event_id``). Multivalue fields
arrive as lists. ``src`` and ``dest`` name a machine either way: an address is an IP with
its role, a name a host.

Severity is the row's ``urgency`` (Enterprise Security) or ``severity`` when it is one of
informational, low, medium, high, critical; else the detector's ``severity`` option. The
id is the notable's ``event_id``; else a digest of the search id and the row, so the same
trigger delivered twice is one event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from integrations.detectors.common import (
    JSONDetector,
    ObservableBuilder,
    SeverityName,
    fingerprint,
    raw_json,
    severity,
    text,
    timestamp,
)
from integrations.detectors.extract import STANDARD, add_ips, add_machine, values
from integrations.detectors.network import add_host, add_url
from pipeline.errors import ParseError
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent, detectors

SEVERITY = {**STANDARD, "unknown": "medium"}
USERS = ("user", "src_user", "dest_user", "user_name", "recipient", "sender", "user_email")
HOSTS = ("dest_nt_host", "src_nt_host", "dest_host", "src_host", "dvc_host", "nt_host")
HASHES = ("file_hash", "hash", "md5", "sha1", "sha256", "process_hash", "parent_process_hash")
FILES = ("file_path", "process_path", "parent_process_path")


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"severity": "high"}]}
    )

    severity: SeverityName = "medium"  # of a result that states none


@detectors.register("splunk")
class SplunkDetector(JSONDetector):
    name = "splunk"
    label = "Splunk"
    expects = (
        "a webhook alert action body (sid and result) or search results (results with "
        "preview, init_offset or fields)"
    )
    Options = Options

    def __init__(self, *, severity: str = "medium") -> None:
        self.severity = severity

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, list):
            return [record for item in document for record in self.records(item)]
        if isinstance(document, Mapping) and "results" in document and _is_results(document):
            rows = document["results"]
            if not isinstance(rows, list):
                raise ParseError("splunk: results is not a list")
            return [{"result": row} for row in rows]
        return [document]

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return isinstance(record.get("result"), Mapping) and (
            "sid" in record or set(record) == {"result"}
        )

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        row = record["result"]
        name = text(record.get("search_name")) or text(row.get("search_name"))
        name = text(row.get("rule_title")) or text(row.get("rule_name")) or name
        word = text(row.get("urgency")) or text(row.get("severity"))
        normalised, vendor = severity(word, SEVERITY, default=self.severity)
        if vendor is not None and vendor.lower() not in SEVERITY:
            normalised = self.severity
        ident = text(row.get("event_id")) or text(row.get("notable_id"))
        sid = text(record.get("sid"))
        return ParsedEvent(
            external_id=ident or fingerprint({"sid": sid, "result": row}),
            title=name or (f"Splunk search {sid}" if sid else "Splunk search result"),
            severity=normalised,
            vendor_severity=vendor,
            occurred_at=timestamp(row.get("_time")) or timestamp(row.get("orig_time")),
            observables=observables(row),
            raw=raw_json(record if sid else row),
        )


def _is_results(document: Mapping[str, Any]) -> bool:
    return any(key in document for key in ("preview", "init_offset", "fields", "messages"))


def observables(row: Mapping[str, Any]) -> Observables:
    """The CIM fields of one result row."""
    found = ObservableBuilder()
    for key in USERS:
        for value in values(row.get(key)):
            found.user(value)
    for key in HOSTS:
        for value in values(row.get(key)):
            found.host(value)
    add_machine(found, row.get("src"), "src")
    add_machine(found, row.get("dest"), "dst")
    add_machine(found, row.get("dvc"))
    add_machine(found, row.get("host"))
    for key, role in (("src_ip", "src"), ("dest_ip", "dst"), ("ip", None), ("dvc_ip", None)):
        add_ips(found, row.get(key), role)
    for key in HASHES:
        for value in values(row.get(key)):
            found.hash(value)
    for key in FILES:
        for value in values(row.get(key)):
            found.file(value)
    if row.get("file_path") is None:
        for value in values(row.get("file_name")):
            found.file(value)
    for key in ("process_name", "process", "parent_process_name"):
        for value in values(row.get(key)):
            found.process(value)
    for key in ("url", "http_referrer"):
        for value in values(row.get(key)):
            add_url(found, value)
    for key in ("query", "domain", "dest_dns", "url_domain"):
        for value in values(row.get(key)):
            add_host(found, value)
    return found.build()
