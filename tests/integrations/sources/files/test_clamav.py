"""The clamav detector: on ClamAV's line forms, then on logs written by real clamscan and
clamd, tailed by the logfile source through the polling runner."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from integrations.detectors.clamav import ClamAVDetector
from integrations.sources.logfile import LogFileSource
from pipeline.db import Database
from pipeline.errors import ConfigError, ParseError
from pipeline.plugins import Context, Detector, build_plugin, detectors
from pipeline.sources import poll
from tests.fixtures.clamav import ClamAV
from tests.integrations.sources.files.helpers import stored_events

EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"


def one(line: str, **options: str) -> dict:
    (event,) = ClamAVDetector(**options).parse(line.encode())
    return {
        "title": event.title,
        "severity": event.severity,
        "occurred_at": event.occurred_at,
        "observables": event.observables.model_dump(exclude_defaults=True),
        "raw": event.raw,
    }


def test_registered_and_a_detector() -> None:
    assert detectors.get("clamav") is ClamAVDetector
    assert isinstance(ClamAVDetector(), Detector)


def test_clamd_line_with_its_time() -> None:
    line = "Sat Nov 28 01:02:03 2026 -> /srv/x.exe: Win.Test.EICAR_HDB-1 FOUND"
    assert one(line) == {
        "title": "ClamAV: Win.Test.EICAR_HDB-1 in /srv/x.exe",
        "severity": "high",
        "occurred_at": datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC),
        "observables": {"files": ["/srv/x.exe"]},
        "raw": line,
    }


def test_clamscan_line_without_time_and_a_path_with_colons() -> None:
    got = one("/home/bob/notes: draft.doc: Doc.Dropper.Agent-1234 FOUND")
    assert got["title"] == "ClamAV: Doc.Dropper.Agent-1234 in /home/bob/notes: draft.doc"
    assert got["observables"] == {"files": ["/home/bob/notes: draft.doc"]}
    assert got["occurred_at"] is None


def test_instream_names_the_client_not_a_file() -> None:
    got = one("Sat Nov  1 01:02:03 2026 -> instream(127.0.0.1@1234): Eicar FOUND")
    assert got["title"] == "ClamAV: Eicar in instream(127.0.0.1@1234)"
    assert got["observables"] == {"ips": ["127.0.0.1"]}
    assert got["occurred_at"] == datetime(2026, 11, 1, 1, 2, 3, tzinfo=UTC)
    assert one("instream(local): Eicar FOUND")["observables"] == {}


def test_extended_detection_info_gives_the_hash() -> None:
    got = one(f"/srv/e.com: Eicar-Signature({EICAR_MD5}:68) FOUND")
    assert got["title"] == "ClamAV: Eicar-Signature in /srv/e.com"
    assert got["observables"]["hashes"] == [EICAR_MD5]
    assert got["observables"]["hash_types"] == {EICAR_MD5: "md5"}


def test_syslog_lines_give_the_host() -> None:
    got = one("2026-11-28T01:02:03.5+01:00 mail-1 clamd[812]: /var/spool/m1: Eicar FOUND")
    assert got["observables"] == {"hosts": ["mail-1"], "files": ["/var/spool/m1"]}
    assert got["occurred_at"] == datetime(2026, 11, 28, 0, 2, 3, 500000, tzinfo=UTC)
    bsd = one("Nov 28 01:02:03 mail-2 clamd[812]: /var/spool/m2: Eicar FOUND")
    assert bsd["observables"]["hosts"] == ["mail-2"]
    assert bsd["occurred_at"] is not None and bsd["occurred_at"].month == 11


def test_other_lines_are_skipped_and_no_detection_is_a_parse_error() -> None:
    delivery = (
        b"/srv/clean.txt: OK\n"
        b"LibClamAV Warning: **************************************************\n"
        b"/srv/locked: Access denied. ERROR\n"
        b"----------- SCAN SUMMARY -----------\nInfected files: 1\n"
        b"/srv/bad.exe: Eicar FOUND\n"
        b"Sat Nov 28 01:02:03 2026 -> SelfCheck: Database status OK.\n"
    )
    (event,) = ClamAVDetector().parse(delivery)
    assert event.title == "ClamAV: Eicar in /srv/bad.exe"
    with pytest.raises(ParseError, match="no detection"):
        ClamAVDetector().parse(b"/srv/clean.txt: OK\nInfected files: 0\n")


def test_id_is_a_fingerprint_of_the_line() -> None:
    detector = ClamAVDetector()
    first = detector.parse(b"/a: Eicar FOUND")[0].external_id
    assert detector.parse(b"  /a: Eicar FOUND\r\n")[0].external_id == first
    assert detector.parse(b"/b: Eicar FOUND")[0].external_id != first


def test_options() -> None:
    got = one(
        "Sat Nov 28 01:02:03 2026 -> /x: Eicar FOUND", severity="critical", timezone="Europe/Paris"
    )
    assert got["severity"] == "critical"
    assert got["occurred_at"] == datetime(2026, 11, 28, 0, 2, 3, tzinfo=UTC)
    with pytest.raises(ConfigError, match="^detector clamav: option 'severity'"):
        build_plugin(detectors, "clamav", {"severity": "scary"}, Context())
    with pytest.raises(ConfigError, match="^detector clamav: option 'timezone': unknown time zone"):
        build_plugin(detectors, "clamav", {"timezone": "Mars/Olympus"}, Context())
    with pytest.raises(ConfigError, match="unknown time zone"):
        ClamAVDetector(timezone="Mars/Olympus")


async def test_real_clamscan_log_tailed_into_events(db: Database, clamav: ClamAV) -> None:
    bad = clamav.sample("invoice.exe", b"fido test sample one\n", signature="Fido.Test.One")
    worse = clamav.sample("deep/dir/run me.sh", b"fido test sample two\n", "Fido.Test.Two")
    clamav.sample("clean.txt", b"nothing to see\n")
    log = clamav.root / "clamscan.log"
    output = clamav.clamscan(clamav.root / "samples", log=log)
    assert "FOUND" in output.stdout
    source = LogFileSource("clamscan", "clamav", path=log, pattern=r" FOUND$")
    result = await poll(db=db, source=source, detector=ClamAVDetector())
    assert (len(result.created), result.dead_letters) == (2, 0)
    events = await stored_events(db)
    assert sorted(e.title for e in events) == [
        f"ClamAV: Fido.Test.One.UNOFFICIAL in {bad}",
        f"ClamAV: Fido.Test.Two.UNOFFICIAL in {worse}",
    ]
    assert sorted(f for e in events for f in e.observables["files"]) == sorted(
        [str(bad), str(worse)]
    )
    assert {e.severity for e in events} == {"high"}

    clamav.clamscan(bad, log=log)  # a second scan appends to the same log
    again = await poll(db=db, source=source, detector=ClamAVDetector())
    # the same line again is the same alert: recognised, not stored twice
    assert (again.created, again.duplicates, again.dead_letters) == ([], 1, 0)


async def test_real_clamd_log_tailed_into_events(db: Database, clamav: ClamAV) -> None:
    sample = clamav.sample("dropper.bin", b"fido clamd sample\n", signature="Fido.Test.Clamd")
    clamav.start_clamd()
    assert "FOUND" in clamav.clamdscan(sample)
    assert "FOUND" in clamav.clamdscan(sample, stream=True, tcp=True)
    source = LogFileSource("clamd", "clamav", path=clamav.clamd_log, pattern=r" FOUND$")
    result = await poll(db=db, source=source, detector=ClamAVDetector())
    assert (len(result.created), result.dead_letters) == (2, 0)
    by_file, by_stream = await stored_events(db)
    assert by_file.title == f"ClamAV: Fido.Test.Clamd.UNOFFICIAL in {sample}"
    assert by_file.observables["files"] == [str(sample)]
    assert by_file.observables["hashes"] == [hashlib.md5(sample.read_bytes()).hexdigest()]
    assert by_file.occurred_at is not None
    assert by_stream.title.startswith("ClamAV: Fido.Test.Clamd.UNOFFICIAL in instream(127.0.0.1@")
    assert by_stream.observables["ips"] == ["127.0.0.1"]
