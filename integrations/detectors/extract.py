"""What detectors share when they read a vendor's record: severity words, nested and
flattened fields, lists of objects, paths, accounts, and the id-or-fingerprint fallback.

A vendor module states only its vendor's fields; these helpers read them the same way
everywhere::

    field(record, "user.name")      # {"user": {"name": …}} or {"user.name": …} alike
    account("alice", "CORP")        # "CORP\\alice"
    ident(record, record.get("id")) # the vendor's id, else a fingerprint of the record
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from integrations.detectors.common import ObservableBuilder, fingerprint, present, text

# The words most vendors use for severity, lower-cased. A vendor module copies and
# extends it (``{**STANDARD, "severe": "critical"}``) rather than writing its own.
STANDARD: dict[str, str] = {
    "info": "informational",
    "informational": "informational",
    "information": "informational",
    "low": "low",
    "medium": "medium",
    "moderate": "medium",
    "high": "high",
    "critical": "critical",
}


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is an object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def objects(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a list (other items dropped); one object alone is a list of one, as
    forwarders that flatten single-item lists deliver it."""
    if isinstance(value, Mapping):
        return [value]
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def field(record: Any, path: str) -> Any:
    """The value at a dotted ``path``, whether the record nests it (``{"user": {"name"}}``),
    flattens it (``{"user.name": …}``, as Splunk, Wazuh and Elastic's exports may) or
    mixes both (``{"user": {"target.name": …}}``). None when absent."""
    if not isinstance(record, Mapping):
        return None
    if path in record:
        return present(record[path])
    head, dot, rest = path.partition(".")
    while dot:
        if head in record:
            found = field(record[head], rest)
            if found is not None:
                return found
        step, dot, rest = rest.partition(".")
        head = f"{head}.{step}"
    return None


def flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    """A nested record as one level of dotted keys (lists kept whole)."""
    flat: dict[str, Any] = {}
    if not isinstance(record, Mapping):
        return flat
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def values(value: Any) -> Iterator[Any]:
    """The items of a list, or the value itself: fields that vendors give as one value or
    as several."""
    if isinstance(value, list):
        yield from value
    elif value is not None:
        yield value


def basename(path: Any) -> str | None:
    """The last part of a Windows or POSIX path."""
    value = text(path)
    return re.split(r"[\\/]", value)[-1] or None if value else None


def join_path(folder: Any, name: Any) -> str | None:
    """A folder and a file name as one path; the folder alone when it already ends with the
    name, the name alone without a folder."""
    folder, name = text(folder), text(name)
    if folder is None:
        return name
    if name is None or folder.rstrip("\\/").endswith(name):
        return folder
    separator = "/" if "/" in folder and "\\" not in folder else "\\"
    return folder.rstrip("\\/") + separator + name


def account(name: Any, domain: Any = None) -> str | None:
    """``DOMAIN\\name`` from a name and a domain; the name alone without a domain, or
    when it is already qualified (``CORP\\alice``, ``alice@corp.example``)."""
    name, domain = text(name), text(domain)
    if name is None:
        return None
    return f"{domain}\\{name}" if domain and "\\" not in name and "@" not in name else name


def ident(record: Any, *candidates: Any) -> str:
    """The first of the vendor's ids that is present (kept whole: ingest fits a long one
    to the column, the same way for every redelivery); else a fingerprint of the record,
    so a redelivery is still recognised."""
    for candidate in candidates:
        value = text(candidate)
        if value is not None:
            return value
    return fingerprint(record)


def title(name: Any, description: Any) -> str | None:
    """ "name: description" when both are given and differ, else whichever is."""
    name, description = text(name), text(description)
    if name and description and description != name:
        return f"{name}: {description}"
    return name or description


def add_process(
    found: ObservableBuilder,
    record: Any,
    *,
    name: str | None = None,
    path: str | None = None,
    hashes: tuple[str, ...] = (),
    user: str | None = None,
) -> None:
    """A nested process or file record (``process``, ``parent``, ``sourceProcessInfo``,
    ``file``): its image name as a process, its full path as a file, its hashes and the
    account it ran as. Keys are dotted paths read with :func:`field`."""
    if not isinstance(record, Mapping):
        return
    path_value = text(field(record, path)) if path else None
    name_value = text(field(record, name)) if name else None
    found.process(basename(name_value) or basename(path_value))
    full = join_path(path_value, basename(name_value)) if path_value else None
    if full is None and name_value and basename(name_value) != name_value:
        full = name_value
    found.file(full)
    for key in hashes:
        for digest in values(field(record, key)):
            found.hash(digest)
    if user:
        found.user(field(record, user))


def add_ips(found: ObservableBuilder, value: Any, role: str | None = None) -> None:
    """Addresses given as one value, a list, or joined by commas."""
    for item in values(value):
        for address in (text(item) or "").split(","):
            found.ip(address.strip(), role)


def add_machine(found: ObservableBuilder, value: Any, role: str | None = None) -> None:
    """A field that names a machine either way (Splunk's CIM ``src``/``dest``, a sensor's
    ``host``): an IP literal becomes an IP with ``role``, anything else a host."""
    for item in values(value):
        name = text(item)
        if name is None:
            continue
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            found.host(name)
        else:
            found.ip(name, role)


def camel(value: Any) -> Any:
    """``value`` with every key's first letter lower-cased, so a vendor's PascalCase
    output (AWS SDKs, Sentinel's SecurityAlert table) reads like its camelCase API."""
    if isinstance(value, Mapping):
        return {
            (k[:1].lower() + k[1:] if isinstance(k, str) else k): camel(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value
