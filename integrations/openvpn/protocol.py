"""What OpenVPN's management protocol text means: safe common names, ``status 3`` rows.

Pure functions, no I/O: :mod:`integrations.openvpn.management` sends and reads the lines.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InputError

MAX_COMMON_NAME_BYTES = 64  # OpenVPN's TLS_USERNAME_LEN: longer names never reach it
_NAME_PUNCTUATION = frozenset("._-@+")
_LETTERS_AND_DIGITS = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})


class InvalidCommonName(InputError):
    """A common name that Fido refuses to send to OpenVPN or to use as a file name."""


def common_name_problem(value: str) -> str | None:
    """Why ``value`` is not a common name Fido will use, or None when it is.

    Allowed: letters (any script), decimal digits and ``. _ - @ +``; at most 64 bytes of
    UTF-8; not starting with "." and without ".."; not "UNDEF". Refusing spaces, quotes and
    backslashes means a name never needs the management protocol's quoting; refusing
    separators, dots in front and control characters means it is always one plain file in
    a directory and one argument on one command line."""
    if not value:
        return "is empty"
    for char in value:
        if char in "\r\n":
            return "holds a line break"
        if unicodedata.category(char)[0] == "C":
            return f"holds the control or format character U+{ord(char):04X}"
    if "/" in value or "\\" in value:
        return "holds a path separator"
    if ".." in value:
        return "holds '..'"
    if value.startswith("."):
        return "starts with '.'"
    if value == "UNDEF":  # what status and kill call every client still in its handshake
        return "is OpenVPN's name for clients not yet identified"
    for char in value:
        if unicodedata.category(char) not in _LETTERS_AND_DIGITS and char not in _NAME_PUNCTUATION:
            return f"holds {char!r} (allowed: letters, digits and . _ - @ +)"
    if len(value.encode()) > MAX_COMMON_NAME_BYTES:
        return f"is longer than OpenVPN's {MAX_COMMON_NAME_BYTES} bytes"
    return None


def validate_common_name(value: str) -> str:
    """``value`` unchanged when it is a safe common name; InvalidCommonName otherwise."""
    problem = common_name_problem(value)
    if problem is not None:
        shown = repr(value) if len(value) <= 80 else repr(value[:80]) + "…"
        raise InvalidCommonName(f"the common name {shown} {problem}")
    return value


@dataclass(frozen=True)
class ClientSession:
    """One row of ``CLIENT_LIST`` in ``status 3``: a client instance the server holds."""

    common_name: str  # "UNDEF" while the TLS handshake is still running
    real_address: str
    virtual_address: str = ""
    virtual_ipv6_address: str = ""
    bytes_received: int = 0
    bytes_sent: int = 0
    connected_since: int | None = None  # Unix time
    username: str = ""
    client_id: int | None = None  # OpenVPN 2.4+
    peer_id: int | None = None  # OpenVPN 2.4+
    cipher: str = ""  # OpenVPN 2.5+

    @property
    def established(self) -> bool:
        """Whether the tunnel is up: a rejected or half-done client has no VPN address."""
        return bool(self.virtual_address or self.virtual_ipv6_address)


# The CLIENT_LIST columns by the name their HEADER row gives them, and the two layouts
# OpenVPN has printed (2.4 added the IPv6 address, client and peer ids; 2.5 the cipher).
_FIELDS = {
    "Common Name": "common_name",
    "Real Address": "real_address",
    "Virtual Address": "virtual_address",
    "Virtual IPv6 Address": "virtual_ipv6_address",
    "Bytes Received": "bytes_received",
    "Bytes Sent": "bytes_sent",
    "Connected Since (time_t)": "connected_since",
    "Username": "username",
    "Client ID": "client_id",
    "Peer ID": "peer_id",
    "Data Channel Cipher": "cipher",
}
_INTEGERS = {"bytes_received", "bytes_sent", "connected_since", "client_id", "peer_id"}
OLD_COLUMNS = (
    "Common Name", "Real Address", "Virtual Address", "Bytes Received", "Bytes Sent",
    "Connected Since", "Connected Since (time_t)", "Username",
)  # fmt: skip
NEW_COLUMNS = (
    "Common Name", "Real Address", "Virtual Address", "Virtual IPv6 Address",
    "Bytes Received", "Bytes Sent", "Connected Since", "Connected Since (time_t)",
    "Username", "Client ID", "Peer ID", "Data Channel Cipher",
)  # fmt: skip


def parse_status(lines: Iterable[str]) -> list[ClientSession]:
    """The client sessions in the lines of a ``status 3`` answer (tab-separated).

    Columns are read by the names in the ``HEADER CLIENT_LIST`` row, so any OpenVPN
    version's set works; without a header the field count picks the old or new layout."""
    columns: list[str] | None = None
    sessions = []
    for line in lines:
        fields = line.split("\t")
        if fields[:2] == ["HEADER", "CLIENT_LIST"]:
            columns = fields[2:]
        elif fields[0] == "CLIENT_LIST" and len(fields) > 2:
            values = fields[1:]
            names = columns or (OLD_COLUMNS if len(values) == len(OLD_COLUMNS) else NEW_COLUMNS)
            row: dict[str, Any] = {}
            for name, value in zip(names, values, strict=False):
                if (field := _FIELDS.get(name)) is not None:
                    row[field] = _integer(value) if field in _INTEGERS else value
            if row.get("common_name") is not None and row.get("real_address") is not None:
                sessions.append(ClientSession(**row))
    return sessions


def _integer(value: str) -> int | None:
    return int(value) if value.isdigit() else None
