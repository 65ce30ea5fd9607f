"""The log-file tailer: restart, partial lines, rotation, truncation, patterns, dead letters."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from integrations.detectors.generic import GenericDetector
from integrations.sources.logfile import LogFileSource
from pipeline.db import Database
from pipeline.errors import ConfigError
from pipeline.plugins import Source, sources
from pipeline.sources import cursor_of, poll
from tests.integrations.sources.build import build_source
from tests.integrations.sources.files.helpers import dead_letters, stored_events


def alert(n: int, **extra: Any) -> str:
    return json.dumps({"id": f"a-{n}", "title": f"alert {n}", **extra}) + "\n"


def append(path: Path, text: str, encoding: str = "utf-8") -> None:
    with path.open("a", encoding=encoding, newline="") as handle:
        handle.write(text)


async def lines(source: LogFileSource, cursor: dict[str, Any]) -> tuple[list[str], dict]:
    batch = await source.fetch(cursor)
    return [p.decode() for p in batch.payloads], batch.cursor


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "alerts.log"


def test_registered_and_a_source(log: Path) -> None:
    assert sources.get("logfile") is LogFileSource
    assert isinstance(LogFileSource("t", "generic", path=log), Source)


async def test_restart_neither_loses_nor_repeats_lines(db: Database, log: Path) -> None:
    detector = GenericDetector()
    append(log, alert(1) + alert(2) + alert(3))
    first = await poll(db=db, source=LogFileSource("ids", "generic", path=log), detector=detector)
    assert (len(first.created), first.duplicates) == (3, 0)

    append(log, alert(4) + alert(5) + alert(6)[:10])  # the 6th is still being written
    restarted = LogFileSource("ids", "generic", path=log)  # a new process: only the cursor
    second = await poll(db=db, source=restarted, detector=detector)
    assert (len(second.created), second.duplicates) == (2, 0)
    cursor = await cursor_of(db, "ids")
    assert cursor["offset"] == log.stat().st_size - 10
    assert (cursor["dev"], cursor["ino"]) == (log.stat().st_dev, log.stat().st_ino)

    append(log, alert(6)[10:])
    third = await poll(db=db, source=LogFileSource("ids", "generic", path=log), detector=detector)
    assert (len(third.created), third.duplicates) == (1, 0)
    again = await poll(db=db, source=LogFileSource("ids", "generic", path=log), detector=detector)
    assert (again.created, again.duplicates, again.dead_letters) == ([], 0, 0)
    assert [e.title for e in await stored_events(db)] == [f"alert {n}" for n in range(1, 7)]


async def test_partial_last_line_waits_for_its_newline(log: Path) -> None:
    source = LogFileSource("t", "generic", path=log)
    append(log, '{"title": "half')
    got, cursor = await lines(source, {})
    assert got == [] and cursor["offset"] == 0
    append(log, ' done"}\r\n{"title": "next"}\n')
    got, cursor = await lines(source, cursor)
    assert got == ['{"title": "half done"}', '{"title": "next"}']
    assert cursor["offset"] == log.stat().st_size
    assert (await lines(source, cursor))[0] == []


async def test_missing_file_waits_until_it_appears(log: Path) -> None:
    source = LogFileSource("t", "generic", path=log)
    batch = await source.fetch({})
    assert (batch.payloads, batch.cursor, batch.more) == ([], {}, False)
    append(log, alert(1))
    assert (await lines(source, batch.cursor))[0] == [alert(1).strip()]


async def test_rotation_finishes_the_old_file_then_reads_the_new(log: Path) -> None:
    source = LogFileSource("t", "generic", path=log)
    append(log, alert(1))
    _, cursor = await lines(source, {})
    append(log, alert(2) + alert(3)[:5])  # unread when logrotate renames the file
    log.rename(log.with_name("alerts.log.1"))
    got, cursor = await lines(source, cursor)
    assert got == [alert(2).strip()]  # no new file yet: the writer may finish the line
    assert cursor["path"].endswith("alerts.log.1")
    append(log.with_name("alerts.log.1"), alert(3)[5:])  # it had not reopened yet
    got, cursor = await lines(source, cursor)
    assert got == [alert(3).strip()]

    append(log, alert(4))
    got, cursor = await lines(source, cursor)
    assert got == [alert(4).strip()]
    assert cursor["ino"] == log.stat().st_ino and cursor["offset"] == log.stat().st_size


async def test_rotation_when_new_file_is_already_there(log: Path) -> None:
    source = LogFileSource("t", "generic", path=log)
    append(log, alert(1))
    _, cursor = await lines(source, {})
    append(log, alert(2) + '{"title": "cut short by the rotation"}')
    log.rename(log.with_name("alerts.log-20261128"))
    append(log, alert(3) + alert(4))
    got, cursor = await lines(source, cursor)
    # the old file's last line is final once it is rotated; then the new file from 0
    assert got == [alert(2).strip(), '{"title": "cut short by the rotation"}'] + [
        alert(3).strip(),
        alert(4).strip(),
    ]
    assert cursor["ino"] == log.stat().st_ino


async def test_rotated_file_gone_starts_the_new_file(
    log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = LogFileSource("t", "generic", path=log)
    append(log, alert(1))
    _, cursor = await lines(source, {})
    log.rename(log.with_name("alerts.log.1"))
    append(log, alert(9))
    log.with_name("alerts.log.1").unlink()  # compressed away before Fido came back
    with caplog.at_level(logging.WARNING):
        got, cursor = await lines(source, cursor)
    assert got == [alert(9).strip()]
    assert "rotated away" in caplog.text


async def test_deleted_and_recreated_file_is_read_from_its_start(log: Path) -> None:
    source = LogFileSource("t", "generic", path=log)
    append(log, alert(1) + alert(2))
    _, cursor = await lines(source, {})
    log.unlink()
    append(log, alert(3, note="the filesystem may give it the old inode"))
    got, cursor = await lines(source, cursor)
    assert got == [alert(3, note="the filesystem may give it the old inode").strip()]


async def test_copytruncate_restarts_at_zero(log: Path) -> None:
    source = LogFileSource("t", "generic", path=log)
    append(log, alert(1) + alert(2) + alert(3))
    _, cursor = await lines(source, {})
    inode = log.stat().st_ino
    os.truncate(log, 0)
    append(log, alert(4))  # shorter than where the tail was
    got, cursor = await lines(source, cursor)
    assert got == [alert(4).strip()]
    assert log.stat().st_ino == inode and cursor["offset"] == log.stat().st_size


async def test_truncated_and_regrown_past_the_offset_is_noticed(log: Path) -> None:
    source = LogFileSource("t", "generic", path=log)
    append(log, alert(1))
    _, cursor = await lines(source, {})
    os.truncate(log, 0)
    fresh = [alert(n, note="x" * 40) for n in (5, 6, 7)]
    append(log, "".join(fresh))  # already longer than the old offset when Fido looks
    got, cursor = await lines(source, cursor)
    assert got == [line.strip() for line in fresh]


async def test_pattern_passes_only_matching_lines(log: Path) -> None:
    source = LogFileSource("t", "clamav", path=log, pattern=r" FOUND$")
    append(log, "/srv/a: OK\n/srv/b.exe: Eicar FOUND\n----------- SCAN SUMMARY\n")
    got, _ = await lines(source, {})
    assert got == ["/srv/b.exe: Eicar FOUND"]


async def test_pattern_groups_as_json_feed_the_generic_detector(db: Database, log: Path) -> None:
    pattern = (
        r"^(?P<occurred_at>\S+) \[(?P<severity>\w+)\] (?P<title>.+?) "
        r"src=(?P<src_ip>\S+)(?: user=(?P<user>\S+))?$"
    )
    source = LogFileSource("ids", "generic", path=log, pattern=pattern, as_json=True)
    append(
        log,
        "2026-11-28T01:02:03Z [high] Port scan src=203.0.113.7 user=alice\n"
        "2026-11-28T01:02:04Z heartbeat ok\n"
        "2026-11-28T01:02:05Z [low] Odd DNS src=198.51.100.2\n",
    )
    result = await poll(db=db, source=source, detector=GenericDetector())
    assert (len(result.created), result.dead_letters) == (2, 0)
    first, second = await stored_events(db)
    assert (first.title, first.severity) == ("Port scan", "high")
    assert first.observables["src_ips"] == ["203.0.113.7"]
    assert first.observables["users"] == ["alice"]
    assert json.loads(second.raw) == {
        "occurred_at": "2026-11-28T01:02:05Z",
        "severity": "low",
        "title": "Odd DNS",
        "src_ip": "198.51.100.2",
    }


async def test_a_line_the_parser_rejects_is_a_dead_letter_and_the_cursor_moves_on(
    db: Database, log: Path
) -> None:
    source = LogFileSource("ids", "generic", path=log)
    append(log, alert(1) + "this is not json\n" + alert(3) + '{"severity": "high"}\n')
    result = await poll(db=db, source=source, detector=GenericDetector())
    assert (len(result.created), result.dead_letters) == (2, 2)
    letters = await dead_letters(db)
    assert [d.body for d in letters] == [b"this is not json", b'{"severity": "high"}']
    assert {d.source for d in letters} == {"ids"}
    assert (await cursor_of(db, "ids"))["offset"] == log.stat().st_size
    append(log, alert(5))
    later = await poll(db=db, source=source, detector=GenericDetector())
    assert (len(later.created), later.dead_letters) == (1, 0)
    assert len(await dead_letters(db)) == 2


async def test_max_lines_asks_for_more(db: Database, log: Path) -> None:
    append(log, "".join(alert(n) for n in range(7)))
    source = LogFileSource("ids", "generic", path=log, max_lines=3)
    batch = await source.fetch({})
    assert len(batch.payloads) == 3 and batch.more
    result = await poll(db=db, source=source, detector=GenericDetector())
    assert (len(result.created), result.batches) == (7, 3)


async def test_other_encodings_become_utf8(log: Path) -> None:
    log.write_bytes('{"title": "Café malware"}\n'.encode("latin-1"))
    source = LogFileSource("t", "generic", path=log, encoding="latin-1")
    batch = await source.fetch({})
    assert batch.payloads == ['{"title": "Café malware"}'.encode()]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "option 'path' is required"),
        ({"path": "/x", "colour": "red"}, "unknown option 'colour'"),
        ({"path": "/x", "pattern": "(unclosed"}, "not a regular expression"),
        ({"path": "/x", "pattern": "plain", "as_json": True}, "named groups"),
        ({"path": "/x", "as_json": True}, "named groups"),
        ({"path": "/x", "max_lines": 0}, "max_lines"),
        ({"path": "/x", "encoding": "klingon"}, "unknown encoding"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^source s \(logfile\): .*{message}"):
        build_source("logfile", options)


def test_built_from_options(log: Path) -> None:
    source = build_source(
        "logfile",
        {"path": str(log), "pattern": "(?P<title>.+)", "as_json": True, "max_lines": 5},
    )
    assert (source.name, source.detector, source.path, source.max_lines) == (
        "s",
        "generic",
        log,
        5,
    )
    assert source.as_json and source.pattern is not None
