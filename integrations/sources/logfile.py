"""The ``logfile`` source: tail a log file, one payload per complete line.

Detectors with no API of their own (ClamAV, fail2ban, an IDS writing JSON lines) leave
their alerts in a file; this source reads what was appended since the last fetch. The file
holds JSON lines, or text lines of which ``pattern`` (a regular expression, searched in
each line) picks those worth passing on. With ``as_json`` the pattern's named groups become
a JSON object, so any line format can feed the ``generic`` detector::

    sources:
      ids:
        type: logfile
        detector: generic
        options:
          path: /var/log/ids/alerts.log
          pattern: '^(?P<occurred_at>\\S+) (?P<severity>\\w+) (?P<title>.+) src=(?P<src_ip>\\S+)'
          as_json: true

The cursor is the offset of the first unread byte together with the identity of the file
it belongs to (st_dev, st_ino, and a digest of its first bytes), so a restart neither
loses nor repeats a line, and the tail notices when the file changed under it:

- rotation (rename, then a new file): the rest of the old file is read first if it can
  still be found in the same directory under any name (``path.1``, ``path-20261128``, …)
  with the same inode; then the new file is read from its start. Lines a writer appends
  to the old file after that switch, or to a rotated file that is compressed or moved to
  another directory before the tail reaches its end, cannot be read.
- truncation (copytruncate), or a new file that reused the inode: the file is smaller
  than the offset, or its first bytes changed, so it is read again from the start.

A last line without its newline waits for the next fetch (the writer is still writing
it), except at the end of a rotated file once the new file exists.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pipeline.plugins import Batch, Context, sources

log = logging.getLogger(__name__)

HEAD_BYTES = 1024  # how much of the file's start identifies it
MAX_LINE_BYTES = 1 << 20  # a longer "line" is passed on in pieces of this size
MAX_FETCH_BYTES = 16 << 20  # one fetch reads at most this much, then asks to be called again


@dataclass(frozen=True)
class Position:
    """How far the tail got in one file, and how to recognise that file again."""

    dev: int
    ino: int
    offset: int = 0
    head: str = ""  # sha256 of the file's first head_len bytes (all of them already read)
    head_len: int = 0

    @classmethod
    def of(cls, stat: os.stat_result) -> Position:
        """The start of the file ``stat`` describes."""
        return cls(stat.st_dev, stat.st_ino)

    @classmethod
    def from_cursor(cls, cursor: dict[str, Any]) -> Position | None:
        if not cursor:
            return None
        try:
            return cls(
                dev=int(cursor["dev"]),
                ino=int(cursor["ino"]),
                offset=int(cursor["offset"]),
                head=str(cursor.get("head", "")),
                head_len=int(cursor.get("head_len", 0)),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("logfile: ignoring an unreadable cursor %r; reading from the start", cursor)
            return None

    def cursor(self, path: Path) -> dict[str, Any]:
        return {
            "path": str(path),
            "dev": self.dev,
            "ino": self.ino,
            "offset": self.offset,
            "head": self.head,
            "head_len": self.head_len,
        }

    def same_file(self, stat: os.stat_result) -> bool:
        return (stat.st_dev, stat.st_ino) == (self.dev, self.ino)


@dataclass
class _Budget:
    """What one fetch may still read."""

    lines: int
    bytes: int = MAX_FETCH_BYTES

    def spent(self) -> bool:
        return self.lines <= 0 or self.bytes <= 0


@dataclass
class _Read:
    lines: list[bytes]
    position: Position | None
    file: Path
    more: bool = False


def _regex(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"is not a regular expression: {exc}") from None
    return pattern


def _encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r}") from None


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"path": "/var/log/suricata/eve.json"}]}
    )

    path: Path  # the file to tail
    # a regex picking the lines passed on (default: the detector's own, e.g. clamav's
    # " FOUND$"; every line for a detector without one)
    pattern: Annotated[str | None, AfterValidator(_regex)] = None
    as_json: bool = False  # pass the pattern's named groups on as a JSON object
    max_lines: int = Field(default=1000, ge=1)  # per fetch
    encoding: Annotated[str, AfterValidator(_encoding)] = "utf-8"

    @model_validator(mode="after")
    def _named_groups(self) -> Options:
        if self.as_json and (self.pattern is None or not re.compile(self.pattern).groupindex):
            raise ValueError("as_json needs a pattern with named groups")
        return self


LogFileOptions = Options  # the name the methods are annotated with


@sources.register("logfile")
class LogFileSource:
    """Tails ``path``; see the module docstring for the cursor, rotation and truncation."""

    Options = Options

    def __init__(
        self,
        name: str,
        detector: str,
        *,
        path: str | os.PathLike[str],
        pattern: str | None = None,
        as_json: bool = False,
        max_lines: int = 1000,
        encoding: str = "utf-8",
    ) -> None:
        self.name = name
        self.detector = detector
        self.path = Path(path)
        self.pattern = re.compile(pattern) if pattern is not None else None
        self.as_json = as_json
        self.max_lines = max_lines
        self.encoding = codecs.lookup(encoding).name

    @classmethod
    def build(cls, options: LogFileOptions, context: Context) -> LogFileSource:
        """Without a pattern of its own, the tail passes on the lines its detector reads."""
        detector = context.source_detector()
        return cls(
            context.name,
            detector.name,
            path=options.path,
            pattern=options.pattern if options.pattern is not None else detector.line_pattern,
            as_json=options.as_json,
            max_lines=options.max_lines,
            encoding=options.encoding,
        )

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        read = await asyncio.to_thread(self._read, Position.from_cursor(cursor))
        payloads = [p for line in read.lines if (p := self.payload(line)) is not None]
        new_cursor = read.position.cursor(read.file) if read.position else dict(cursor)
        return Batch(payloads=payloads, cursor=new_cursor, more=read.more)

    def payload(self, line: bytes) -> bytes | None:
        """What one line passes on to the detector; None when it is skipped."""
        if not line.strip():
            return None
        if self.pattern is None:
            return self._utf8(line)
        match = self.pattern.search(line.decode(self.encoding, errors="replace"))
        if match is None:
            return None
        if not self.as_json:
            return self._utf8(line)
        fields = {key: value for key, value in match.groupdict().items() if value is not None}
        return json.dumps(fields, ensure_ascii=False).encode()

    def _utf8(self, line: bytes) -> bytes:
        if self.encoding == "utf-8":
            return line  # as written, even if not valid UTF-8 (a dead letter keeps it so)
        return line.decode(self.encoding, errors="replace").encode()

    def _read(self, position: Position | None) -> _Read:
        """Complete lines after ``position``: the rest of a rotated file, then the new one
        (file work: run in a thread)."""
        lines: list[bytes] = []
        budget = _Budget(self.max_lines)
        for _ in range(4):  # old file, new file, and a retry if one is replaced meanwhile
            live = _stat(self.path)
            if position is None:
                if live is None:
                    return _Read(lines, None, self.path)
                position = Position.of(live)
            if live is not None and position.same_file(live):
                file: Path | None = self.path
            else:
                file = _find_by_inode(self.path.parent, position)
            if file is None:
                if live is None:  # between a rename and the new file: wait for it
                    return _Read(lines, position, self.path)
                if position.offset:
                    log.warning("%s: %s was rotated away; its rest is lost", self.name, self.path)
                position = Position.of(live)
                continue
            rotated = file != self.path
            # a rotated file's last line is final once its writer has moved to a new file
            final = rotated and live is not None
            moved = self._read_file(file, position, lines, budget, final=final)
            if moved is None:  # replaced between stat and open: look again
                continue
            position = moved
            if budget.spent():
                return _Read(lines, position, file, more=True)
            if not rotated or live is None:
                return _Read(lines, position, file)
            log.info("%s: finished rotated %s; now reading %s", self.name, file, self.path)
            position = Position.of(live)
        return _Read(lines, position, self.path, more=True)

    def _read_file(
        self, file: Path, position: Position, lines: list[bytes], budget: _Budget, final: bool
    ) -> Position | None:
        """Append complete lines of ``file`` from ``position``; the new position."""
        try:
            handle = open(file, "rb")
        except FileNotFoundError:
            return None
        with handle:
            stat = os.fstat(handle.fileno())
            if not position.same_file(stat):
                return None
            if stat.st_size < position.offset or not _head_matches(handle, position):
                log.warning("%s: %s was truncated or replaced; reading it again", self.name, file)
                position = Position.of(stat)
            offset = position.offset
            handle.seek(offset)
            while not budget.spent():
                line = handle.readline(MAX_LINE_BYTES)
                if not line:
                    break
                complete = line.endswith(b"\n") or len(line) >= MAX_LINE_BYTES
                if not complete and not final:
                    break  # the writer has not finished this line yet
                offset += len(line)
                budget.lines -= 1
                budget.bytes -= len(line)
                lines.append(line.rstrip(b"\n").rstrip(b"\r"))
            return _advance(handle, position, offset)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _find_by_inode(directory: Path, position: Position) -> Path | None:
    """The file in ``directory`` that is the one ``position`` refers to, under any name."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return None
    for entry in entries:
        if entry.inode() != position.ino or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if position.same_file(entry.stat(follow_symlinks=False)):
                return Path(entry.path)
        except FileNotFoundError:
            continue
    return None


def _digest(handle: IO[bytes], length: int) -> str | None:
    handle.seek(0)
    data = handle.read(length)
    return hashlib.sha256(data).hexdigest() if len(data) == length else None


def _head_matches(handle: IO[bytes], position: Position) -> bool:
    return not position.head_len or _digest(handle, position.head_len) == position.head


def _advance(handle: IO[bytes], position: Position, offset: int) -> Position:
    """``position`` moved to ``offset``, with the digest of the file's (now read) start."""
    head_len = min(offset, HEAD_BYTES)
    if head_len == position.head_len:
        return replace(position, offset=offset)
    return replace(position, offset=offset, head=_digest(handle, head_len) or "", head_len=head_len)
