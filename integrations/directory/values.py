"""Turning Active Directory's wire values into plain Python: times, SIDs, DNs, entries.

Kept apart from the client so each rule can be tested without a server. AD counts time
in FILETIME ticks (100 ns since 1601-01-01 UTC), stores intervals as negative tick counts,
and uses 0 or the largest 64-bit value for "never".
"""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_NEVER = 0x7FFFFFFFFFFFFFFF
_FOREVER = -0x8000000000000000  # lockoutDuration "until an administrator unlocks it"
UF_LOCKOUT = 0x10  # msDS-User-Account-Control-Computed: locked out right now

INTEGER_ATTRIBUTES = frozenset(
    {
        "userAccountControl",
        "primaryGroupID",
        "lockoutTime",
        "lastLogon",
        "lastLogonTimestamp",
        "pwdLastSet",
        "msDS-User-Account-Control-Computed",
        "lockoutDuration",
    }
)
BINARY_SID_ATTRIBUTES = frozenset({"objectSid"})
LIST_ATTRIBUTES = frozenset({"memberOf"})


def filetime(ticks: int | None) -> datetime | None:
    """The UTC time of a FILETIME value; None for "never" (0, absent, or the maximum)."""
    if ticks is None or ticks <= 0 or ticks >= _NEVER:
        return None
    return _EPOCH + timedelta(microseconds=ticks // 10)


def filetime_iso(ticks: int | None) -> str | None:
    """A FILETIME as ISO 8601 UTC to the second, e.g. ``2026-05-01T09:30:00Z``."""
    moment = filetime(ticks)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def to_filetime(moment: datetime) -> int:
    """The FILETIME of an aware datetime (for comparisons and tests)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 10


def is_locked(
    *,
    computed: int | None,
    lockout_time: int | None,
    lockout_duration: int | None,
    now: datetime,
) -> bool:
    """Whether an account is locked out now.

    ``msDS-User-Account-Control-Computed`` is the DC's own answer (it applies fine-grained
    password policies too), so it wins when the DC returned it. Otherwise, as [MS-ADTS]
    3.1.1.4.5.17 computes it: ``lockoutTime`` is set when the account was locked, and the
    lock lasts ``lockoutDuration`` (negative ticks; 0, positive or the minimum value: until
    an administrator unlocks it). An unknown duration counts as still locked: saying "not
    locked" on a guess is the wrong way to fail.
    """
    if computed is not None:
        return bool(computed & UF_LOCKOUT)
    locked_at = filetime(lockout_time)
    if locked_at is None:
        return False
    if lockout_duration is None or lockout_duration >= 0 or lockout_duration == _FOREVER:
        return True
    return now <= locked_at + timedelta(microseconds=-lockout_duration // 10)


def sid_text(raw: bytes) -> str:
    """A binary SID in its ``S-1-5-21-…`` form."""
    if len(raw) < 8 or len(raw) != 8 + 4 * raw[1]:
        raise ValueError(f"not a binary SID: {raw.hex()}")
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack(f"<{raw[1]}I", raw[8:])
    return "-".join(["S", str(raw[0]), str(authority), *map(str, subs)])


# One RDN: a type, "=", then a value of escaped characters or anything but , + and \.
_RDN = re.compile(r"\s*([^=,+]+?)\s*=\s*((?:\\.|[^,+\\])*)\s*(?:[,+]|$)")
_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)")


def dn_parts(dn: str) -> list[tuple[str, str]]:
    """The (type, value) pairs of a DN, leaf first, values unescaped (RFC 4514)."""
    parts: list[tuple[str, str]] = []
    position = 0
    while position < len(dn):
        match = _RDN.match(dn, position)
        if match is None or match.end() == position:
            break
        parts.append((match.group(1), unescape(match.group(2).strip())))
        position = match.end()
    return parts


def unescape(value: str) -> str:
    """An RFC 4514 attribute value without its escapes: ``Ops\\, EU`` -> ``Ops, EU``."""
    raw = bytearray()
    position = 0
    for escape in _ESCAPE.finditer(value):
        raw += value[position : escape.start()].encode()
        escaped = escape.group(1)
        raw += bytes.fromhex(escaped) if len(escaped) == 2 else escaped.encode()
        position = escape.end()
    raw += value[position:].encode()
    return raw.decode("utf-8", errors="replace")


def rdn_value(dn: str) -> str:
    """The value of a DN's first RDN: ``CN=Ops\\, EU,OU=G,...`` -> ``Ops, EU``."""
    parts = dn_parts(dn)
    return parts[0][1] if parts else dn


def container_path(dn: str) -> str | None:
    """Where an entry sits, top-down, domain left out: ``CN=PC,OU=Fin,OU=WS,DC=x`` ->
    ``WS/Fin``; ``CN=PC,CN=Computers,DC=x`` -> ``Computers``. None at the domain root."""
    names = [value for kind, value in dn_parts(dn)[1:] if kind.casefold() != "dc"]
    return "/".join(reversed(names)) or None


def dns_domain(base_dn: str) -> str:
    """The DNS name of a domain from its DN: ``DC=fido,DC=test`` -> ``fido.test``."""
    return ".".join(value for kind, value in dn_parts(base_dn) if kind.casefold() == "dc")


def normalise(item: dict[str, Any]) -> dict[str, Any]:
    """One search result entry as plain values: ``dn``; ``memberOf`` a list; integers as
    int; SIDs as text; other attributes their first value; empty attributes left out."""
    attributes: dict[str, Any] = item.get("attributes") or {}
    raw: dict[str, Any] = item.get("raw_attributes") or {}
    entry: dict[str, Any] = {"dn": item["dn"]}
    for name, values in attributes.items():
        if name in BINARY_SID_ATTRIBUTES:
            if raw.get(name):  # the raw bytes: ldap3 decodes some SIDs as text by chance
                entry[name] = sid_text(raw[name][0])
            continue
        values = [_text(value) for value in (values if isinstance(values, list) else [values])]
        if name in LIST_ATTRIBUTES:
            entry[name] = values
        elif values and values[0] != "":
            entry[name] = int(values[0]) if name in INTEGER_ATTRIBUTES else values[0]
    if "userAccountControl" in attributes:
        entry.setdefault("memberOf", [])
    return entry


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
