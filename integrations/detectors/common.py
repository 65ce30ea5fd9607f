"""Shared helpers for detector parsers: reading deliveries, times, severities, observables,
and ``JSONDetector``, the base of the JSON detectors (``docs/detectors.md`` shows a whole
module; ``extract.py`` holds the helpers for reading a vendor's fields)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pipeline.errors import ParseError
from pipeline.observables import Observables, hash_type
from pipeline.plugins import Delivery, DetectorBase, ParsedEvent, counted

# A detector option naming one of Fido's severities.
SeverityName = Literal["informational", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = get_args(SeverityName)
_ABSENT = {"", "none", "null", "n/a", "na", "-", "--", "unknown", "(null)"}
# Windows' built-in and virtual account "domains": never a person to contain
_VIRTUAL_DOMAINS = (
    "NT AUTHORITY\\",
    "NT SERVICE\\",
    "WINDOW MANAGER\\",
    "FONT DRIVER HOST\\",
    "IIS APPPOOL\\",
    "NT VIRTUAL MACHINE\\",
)
_SYSTEM_ACCOUNTS = {"system", "local service", "network service", "anonymous logon"}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def present(value: Any) -> Any:
    """``value``, or None for the empty markers vendors use ("", "N/A", "-", "None", …)."""
    if value is None:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        return None if stripped.lower() in _ABSENT else stripped
    return value


def dig(record: Any, *path: str | int) -> Any:
    """``record[path[0]][path[1]]…`` or None when any step is missing."""
    value = record
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return None
        elif not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return present(value)


def text(value: Any) -> str | None:
    """A non-empty string from a string or number; None otherwise."""
    value = present(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return str(value)
    return None


# The years a stored time may fall in (pipeline/ingest.py holds every detector to them):
# PostgreSQL stores times Python cannot read back (9999-12-31T23:59:59-23:59 is in year
# 10000 in UTC), and no alert happened before 1970 or will after 2100.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2101, 1, 1, tzinfo=UTC)  # exclusive


def _outside(value: Any, field: str | None) -> ParseError:
    name = f"field {field!r}" if field else "time"
    return ParseError(f"{name}: {value!r} is outside the years 1970-2100")


def within_years(moment: datetime, value: Any, field: str | None = None) -> datetime:
    """``moment`` when it lies in the years 1970-2100; else ParseError naming ``field``
    and the ``value`` it was read from."""
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise _outside(value, field) from None
    if not EARLIEST <= utc < LATEST:
        raise _outside(value, field)
    return moment


def timestamp(value: Any, *, field: str | None = None) -> datetime | None:
    """A UTC-aware datetime from ISO 8601 (any fraction length, Z or offset) or epoch
    seconds / milliseconds / microseconds; None when absent or unreadable; ParseError
    (naming ``field`` when given) when it is outside the years 1970-2100."""
    value = present(value)
    if value is None or isinstance(value, bool):
        return None
    original = value
    if isinstance(value, str) and value.lstrip("-").replace(".", "", 1).isdigit():
        try:
            value = float(value)
        except ValueError:  # digits float() cannot read, e.g. "²"
            return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float
            return None
        if not math.isfinite(seconds):  # inf would never leave the loop below
            return None
        while abs(seconds) > 1e11:  # milliseconds, microseconds, nanoseconds
            seconds /= 1000
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):  # a number, but no year Python knows
            raise _outside(original, field) from None
        return within_years(moment, original, field)
    if not isinstance(value, str):
        return None
    raw = value.replace("Z", "+00:00").replace("z", "+00:00")
    if "." in raw:  # Python 3.11 takes at most 6 fraction digits
        head, _, rest = raw.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]  # not the offset's
        raw = head + "." + digits[:6].ljust(6, "0") + rest[len(digits) :]
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return within_years(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC), value, field)


def severity(
    value: Any, table: Mapping[str, str], default: str = "medium"
) -> tuple[str, str | None]:
    """(normalised severity, the vendor's own value) using ``table`` (lower-cased keys)."""
    vendor = text(value)
    if vendor is None:
        return default, None
    normalised = table.get(vendor.lower(), default)
    assert normalised in SEVERITIES, normalised
    return normalised, vendor


def severity_from_number(
    value: Any, bands: Iterable[tuple[float, str]], default: str = "medium"
) -> tuple[str, str | None]:
    """Map a numeric score with ``bands`` of (minimum, severity), highest first."""
    vendor = text(value)
    if vendor is None:
        return default, None
    try:
        number = float(vendor)
    except ValueError:
        return default, vendor
    for minimum, name in bands:
        if number >= minimum:
            return name, vendor
    return default, vendor


def fitted_id(value: str) -> str:
    """``value`` as an event's id: kept when it fits the 255-character column, else its
    digest, as ingest makes it for every detector: two ids are never cut into one."""
    if len(value) <= 255:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def fingerprint(record: Any) -> str:
    """A stable id for an alert without one: a digest of its canonical JSON."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _address(value: str | None) -> str | None:
    """``value`` as a canonical IP address; None when it is none, or 0.0.0.0 / :: ("no
    address", e.g. a session that was not translated)."""
    if value is None:
        return None
    try:
        parsed = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None
    return None if parsed.is_unspecified else str(parsed)


class ObservableBuilder:
    """Collects observables, ignoring absent values and normalising each kind."""

    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}

    def _add(self, field: str, value: str | None) -> None:
        if value:
            self.values.setdefault(field, []).append(value)

    def user(self, value: Any) -> None:
        """An account: ``alice``, ``CORP\\alice`` or ``alice@corp.example`` (kept as given;
        matching understands every form). Machine accounts and built-ins are skipped."""
        name = text(value)
        if name is None:
            return
        bare = name.rsplit("\\", 1)[-1]
        if name.upper().startswith(_VIRTUAL_DOMAINS) or bare.lower() in _SYSTEM_ACCOUNTS:
            return
        if bare.endswith("$"):  # a computer account
            return
        self._add("users", name)

    def host(self, value: Any) -> None:
        self._add("hosts", text(value))

    def ip(self, value: Any, role: str | None = None) -> None:
        """An IP address (invalid ones are ignored); ``role`` is "src" or "dst"."""
        field = {"src": "src_ips", "dst": "dst_ips"}.get(role or "", "ips")
        self._add(field, _address(text(value)))

    def hash(self, value: Any) -> None:
        """An md5, sha1 or sha256 hex digest (anything else is ignored)."""
        digest = text(value)
        if digest and hash_type(digest):
            self._add("hashes", digest.lower())

    def domain(self, value: Any) -> None:
        name = text(value)
        if name:
            self._add("domains", name.rstrip(".").lower())

    def url(self, value: Any) -> None:
        self._add("urls", text(value))

    def process(self, value: Any) -> None:
        self._add("processes", text(value))

    def file(self, value: Any) -> None:
        self._add("files", text(value))

    def observer(self, value: Any) -> None:
        """The device that saw or reported the alert (a sensor, a firewall, or its address):
        kept and shown, never a correlation key (see :class:`Observables`)."""
        name = text(value)
        if name is None:
            return
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            self._add("observers", name)
        else:
            self._add("observers", _address(name))

    def build(self) -> Observables:
        return Observables.model_validate(self.values)


def json_documents(body: bytes) -> list[Any]:
    """A delivery as JSON values: one document, or JSON Lines (one document per line)."""
    try:
        decoded = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParseError("body is not UTF-8 text") from None
    if not decoded.strip():
        raise ParseError("body is empty")
    try:
        documents = [json.loads(decoded)]
    except RecursionError:
        raise ParseError("body is nested too deeply") from None
    except ValueError as whole:  # JSONDecodeError, or an integer over Python's digit limit
        documents = []
        for number, line in enumerate(decoded.splitlines(), 1):
            if not line.strip():
                continue
            try:
                documents.append(json.loads(line))
            except (ValueError, RecursionError):
                if number == 1:
                    raise ParseError(f"body is not valid JSON: {whole}") from None
                raise ParseError(f"line {number} is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(decoded) and not _utf8(documents):
        # "\ud800" alone is valid JSON but no text: the database could not store it
        raise ParseError("body holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)")
    return documents


def _utf8(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except RecursionError:  # too deep to check here; the parser reports it
        return True
    return True


def log_lines(body: bytes) -> list[str]:
    """A delivery as non-empty text lines."""
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        decoded = body.decode("latin-1")
    lines = [line.rstrip("\r") for line in decoded.split("\n") if line.strip()]
    if not lines:
        raise ParseError("body is empty")
    return lines


class JSONDetector(DetectorBase):
    """Base for JSON detectors: split a delivery into records, turn each into an event.

    ``parse`` accepts a JSON document, a JSON array or JSON Lines. Subclasses state:

    - ``label`` (the product, for messages) and ``list_keys``: the envelope keys whose
      list holds the records (``"resources"``, ``"value"``, …); or override ``records``;
    - ``expects``, the fields that make a record the vendor's, and ``recognises(record)``
      checking them: a record without them is refused, as ParseError "not a LABEL alert:
      expected EXPECTS" (a 422 and a dead letter), never read as a poorer alert;
    - ``skip(record)``: the reason a record the vendor sends is no alert (a heartbeat, a
      flow record), so the delivery is accepted and the record skipped;
    - ``event(record)``: one alert.

    A record that cannot be read raises ParseError naming its position.
    """

    name = "json"
    label = "JSON"
    list_keys: tuple[str, ...] = ()
    expects = "a JSON object"

    def records(self, document: Any) -> list[Any]:
        if isinstance(document, list):
            return [record for item in document for record in self._unwrap(item)]
        return self._unwrap(document)

    def _unwrap(self, document: Any) -> list[Any]:
        if isinstance(document, Mapping):
            for key in self.list_keys:
                if key in document:
                    items = document[key]
                    if items is None:
                        return []
                    if not isinstance(items, list):
                        raise ParseError(f"{self.name}: {key} is not a list")
                    return items
        return [document]

    def recognises(self, record: Mapping[str, Any]) -> bool:
        return True

    def skip(self, record: Mapping[str, Any]) -> str | None:
        return None

    def event(self, record: Mapping[str, Any]) -> ParsedEvent:
        raise NotImplementedError

    def refuse(self) -> ParseError:
        article = "an" if self.label[:1] in "AEIOU" else "a"
        return ParseError(f"not {article} {self.label} alert: expected {self.expects}")

    def parse(self, body: bytes) -> list[ParsedEvent]:
        documents = json_documents(body)
        records: list[Any] = []
        for document in documents:
            records.extend(self.records(document))
        if not records:
            raise ParseError(f"{self.name}: the delivery holds no alerts")
        events = Delivery()
        for index, record in enumerate(counted(records)):
            where = f"alert {index}: " if len(records) > 1 else ""
            if not isinstance(record, Mapping):
                raise ParseError(f"{self.name}: alert {index} is not a JSON object")
            try:
                reason = self.skip(record)
                if reason is not None:
                    events.skipped[reason] = events.skipped.get(reason, 0) + 1
                    continue
                if not self.recognises(record):
                    raise self.refuse()
                events.append(self.event(record))
            except ParseError as exc:
                raise ParseError(f"{self.name}: {where}{exc}") from None
            except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
                shape = f"{type(exc).__name__}: {exc}"
                raise ParseError(
                    f"{self.name}: alert {index} has an unexpected shape ({shape})"
                ) from None
        if len(documents) == 1 and len(events) == 1 and records[0] is documents[0]:
            # a single alert delivered on its own: keep the body byte for byte
            events[0] = replace(events[0], raw=body.decode("utf-8-sig"))
        return events


def has(record: Mapping[str, Any], *keys: str) -> bool:
    """Whether every key is in ``record`` with a value (not null, not an empty marker)."""
    return all(present(record.get(key)) is not None for key in keys)


def raw_json(record: Any) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)
