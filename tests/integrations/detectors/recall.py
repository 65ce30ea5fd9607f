"""Recall of the detectors on their own corpus: of the users, hosts, IP addresses, hashes
and domains each sample carries, the share the detector extracts.

What a sample carries is written beside it, in ``<sample>.expected.json`` (one object per
event the sample holds, in order: ``{"users": [...], "hosts": [...], ...}``). Those files
are the corpus's ground truth, reviewed by hand; ``--draft`` writes missing ones as a
starting point: what the detector finds now, plus what a schema-blind walk of each alert
record finds (every IP literal; hex digests under hash-named keys; values under the
account and machine names vendors use), so a field the detector does not read shows up
as a miss rather than being forgotten.

    python -m tests.integrations.detectors.recall            # the table
    python -m tests.integrations.detectors.recall --draft    # write missing expected files
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from integrations import load_all
from integrations.detectors.common import ObservableBuilder, present
from integrations.detectors.network import host_kind
from pipeline.correlate import key_of
from pipeline.errors import ParseError
from pipeline.observables import Kind
from pipeline.plugins import ParsedEvent, detectors

HERE = Path(__file__).parent
KINDS: dict[str, Kind] = {
    "users": "user",
    "hosts": "host",
    "ips": "ip",
    "hashes": "hash",
    "domains": "domain",
}
_HEX = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
_HASH_KEY = re.compile(r"sha1|sha256|md5|hash", re.IGNORECASE)
_NOT_FILE_HASH = re.compile(r"subject|messagebody|partial|ja3|ja4|fingerprint", re.IGNORECASE)
USER_KEYS = {
    "username", "user_name", "user", "suser", "duser", "srcuser", "dstuser", "accountname",
    "userprincipalname", "upn", "email", "loginsusername", "processuser", "targetusername",
}  # fmt: skip
HOST_KEYS = {
    "hostname", "computername", "computer_name", "devicename", "device_name", "dvchost",
    "dhost", "shost", "agentcomputername", "computerdnsname", "devicednsname",
}  # fmt: skip


def parsed(name: str, sample: Path) -> list[ParsedEvent] | None:
    """The events of a sample; None for a sample kept to be refused (no alert in it)."""
    try:
        return detectors.get(name)().parse(sample.read_bytes())
    except ParseError:
        return None


def samples() -> Iterator[tuple[str, Path]]:
    """(detector, sample) for every corpus file of a registered detector."""
    for folder in sorted(HERE.glob("*/payloads/*")):
        if folder.is_dir() and folder.name in detectors.names():
            for sample in sorted(folder.iterdir()):
                if sample.is_file() and not sample.name.endswith(".expected.json"):
                    yield folder.name, sample


def expected_path(sample: Path) -> Path:
    return sample.with_name(sample.name + ".expected.json")


def found(event: ParsedEvent) -> dict[str, set[str]]:
    """The canonical keys of what the detector extracted, by kind."""
    observed = event.observables.model_dump()
    # a sensor's or firewall's own name (or translated address) is extracted as the
    # alert's observer: shown, never a host or IP of an incident
    for observer in observed.get("observers", []):
        observed["ips" if host_kind(observer) == "ip" else "hosts"].append(observer)
    return {
        kinds: {key_of(kind, v) for v in observed.get(kinds, [])} for kinds, kind in KINDS.items()
    }


def walk(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for child_key, child in value.items():
            yield from walk(child, str(child_key))
    elif isinstance(value, list):
        for child in value:
            yield from walk(child, key)
    elif isinstance(value, str | int) and not isinstance(value, bool):
        yield key, str(value)


def blind(event: ParsedEvent) -> dict[str, set[str]]:
    """What a schema-blind walk of the event's record finds."""
    seen: dict[str, set[str]] = {kinds: set() for kinds in KINDS}
    try:
        pairs = list(walk(json.loads(event.raw)))
    except ValueError:  # a log line: its fields
        pairs = [("", part.strip('"')) for part in re.split(r"[,|\t ]", event.raw)]
    for key, raw in pairs:
        value = present(raw)
        if not isinstance(value, str) or not value.strip("0"):
            continue  # an empty marker, or an all-zero digest (not computed)
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            address = None
        if address is not None and not address.is_unspecified:
            seen["ips"].add(str(address))
        elif _HEX.match(value) and _HASH_KEY.search(key) and not _NOT_FILE_HASH.search(key):
            seen["hashes"].add(value.lower())
        elif key.lower() in USER_KEYS:
            account = ObservableBuilder()
            account.user(value)  # built-in and machine accounts are no one to look at
            seen["users"].update(account.values.get("users", []))
        elif key.lower() in HOST_KEYS and value:
            seen["hosts"].add(value)
    return seen


def draft(events: list[ParsedEvent]) -> list[dict[str, list[str]]]:
    drafted = []
    for event in events:
        observed = event.observables.model_dump()
        extra = blind(event)
        drafted.append(
            {
                kinds: sorted(set(observed.get(kinds, [])) | extra[kinds])
                for kinds in KINDS
                if observed.get(kinds) or extra[kinds]
            }
        )
    return drafted


def measure() -> dict[str, tuple[int, int]]:
    """detector → (expected observables extracted, expected observables)."""
    totals: dict[str, tuple[int, int]] = {}
    for name, sample in samples():
        path = expected_path(sample)
        if not path.exists():
            continue
        events = parsed(name, sample) or []
        wanted = json.loads(path.read_text())
        if len(wanted) != len(events):
            raise SystemExit(f"{path}: {len(wanted)} events expected, {len(events)} parsed")
        hit, total = totals.get(name, (0, 0))
        for event, expected in zip(events, wanted, strict=True):
            have = found(event)
            for kinds, values in expected.items():
                keys = {key_of(KINDS[kinds], v) for v in values}
                hit += len(keys & have[kinds])
                total += len(keys)
        totals[name] = (hit, total)
    return totals


def main(argv: list[str]) -> int:
    load_all()
    if "--draft" in argv:
        for name, sample in samples():
            path = expected_path(sample)
            events = parsed(name, sample)
            if events and not path.exists():
                path.write_text(json.dumps(draft(events), indent=1, ensure_ascii=False) + "\n")
                print(f"wrote {path.relative_to(HERE)}")
    totals = measure()
    print(f"{'detector':<24}{'found':>7}{'expected':>10}{'recall':>8}")
    for name, (hit, total) in sorted(totals.items()):
        print(f"{name:<24}{hit:>7}{total:>10}{hit / total if total else 1:>8.2f}")
    hit = sum(h for h, _ in totals.values())
    total = sum(t for _, t in totals.values())
    print(f"{'all':<24}{hit:>7}{total:>10}{hit / total if total else 1:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
