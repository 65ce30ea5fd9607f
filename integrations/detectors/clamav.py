"""The ``clamav`` detector: ClamAV detections read from clamd's log or clamscan's output.

ClamAV has no webhook; its detections reach Fido as log lines, tailed from a file (the
``logfile`` source) or forwarded by a log shipper. Every form ClamAV writes is read::

    Sat Nov 28 01:02:03 2026 -> /srv/x.exe: Win.Test.EICAR_HDB-1 FOUND    clamd, LogTime yes
    /srv/x.exe: Win.Test.EICAR_HDB-1 FOUND                                clamd / clamscan
    Sat Nov 28 01:02:03 2026 -> instream(127.0.0.1@1234): Eicar FOUND     clamd INSTREAM
    /srv/x.exe: Eicar(44d88612fea8a8f36de82e1278abb02f:68) FOUND          ExtendedDetectionInfo
    Nov 28 01:02:03 mail-1 clamd[812]: /srv/x.exe: Eicar FOUND            through syslog

Everything else ClamAV writes (``OK`` results, errors, ``LibClamAV Warning``, the scan
summary, start-up chatter) is skipped; a delivery holding no detection at all is a
ParseError, so a tail should pass on only the detection lines (``pattern: " FOUND$"``).

The event's id is a fingerprint of its line, so the same line delivered twice is one
alert. ClamAV writes local time without a zone: ``timezone`` names the zone of the host
that wrote the log (UTC by default).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from integrations.detectors.common import ObservableBuilder, SeverityName, fingerprint, log_lines
from integrations.detectors.network import TimeZoneName, syslog_time, zone
from pipeline.errors import ParseError
from pipeline.plugins import DetectorBase, ParsedEvent, counted, detectors

_CLAMD_TIME = r"(?P<clamd_time>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d \d{4}) -> "
_SYSLOG = (
    r"(?:(?P<bsd_time>[A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d)"
    r"|(?P<iso_time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*)) "
    r"(?P<host>\S+) [\w./-]+(?:\[\d+\])?: "
)
_LINE = re.compile(
    rf"^(?:{_SYSLOG})?(?:{_CLAMD_TIME})?(?:ScanOnAccess: )?"
    r"(?P<target>\S.*): (?P<signature>[^\s(]+)"
    r"(?:\((?P<hash>[0-9A-Fa-f]{32,64}):(?P<size>\d+)\))? FOUND$"
)
_INSTREAM = re.compile(r"^instream\((?P<client>.*?)(?:@\d+)?\)$")


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"severity": "high", "timezone": "Europe/Paris"}]},
    )

    severity: SeverityName = "high"  # of every detection
    timezone: TimeZoneName = "UTC"  # of the host that wrote the log


@detectors.register("clamav")
class ClamAVDetector(DetectorBase):
    name = "clamav"
    content_types = ("text/plain",)
    # what a log-file tail passes on when its policy names no pattern: detections only
    line_pattern = r" FOUND$"
    Options = Options

    def __init__(self, *, severity: str = "high", timezone: str = "UTC") -> None:
        self.severity = severity
        self.zone = zone(timezone)

    def parse(self, body: bytes) -> list[ParsedEvent]:
        events = [event for line in counted(log_lines(body)) if (event := self.parse_line(line))]
        if not events:
            raise ParseError("clamav: the delivery holds no detection (no '… FOUND' line)")
        return events

    def parse_line(self, line: str) -> ParsedEvent | None:
        """The event for one detection line; None for any other line ClamAV writes."""
        line = line.strip()
        match = _LINE.match(line)
        if match is None or match["target"].startswith("LibClamAV"):
            return None
        target, signature = match["target"], match["signature"]
        found = ObservableBuilder()
        found.host(match["host"])
        stream = _INSTREAM.match(target)
        if stream is not None:
            found.ip(stream["client"])  # the client that sent the stream (absent: local)
        else:
            found.file(target)
        found.hash(match["hash"])
        return ParsedEvent(
            external_id=fingerprint(line),
            title=f"ClamAV: {signature} in {target}",
            severity=self.severity,
            raw=line,
            observables=found.build(),
            occurred_at=self._time(match),
        )

    def _time(self, match: re.Match[str]) -> datetime | None:
        try:
            if match["clamd_time"]:
                naive = datetime.strptime(match["clamd_time"], "%a %b %d %H:%M:%S %Y")
                return naive.replace(tzinfo=self.zone).astimezone(UTC)
            if match["iso_time"]:
                parsed = datetime.fromisoformat(match["iso_time"].replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=self.zone)
                return parsed.astimezone(UTC)
            if match["bsd_time"]:
                return syslog_time(match["bsd_time"], self.zone)
        except ValueError:
            return None
        return None
