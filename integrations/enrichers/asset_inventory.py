"""``asset_inventory``: who owns a host or address, how critical it is, and which zone it sits in.

Read from a CSV (with a header row) or YAML file (a list of mappings, or ``{"assets":
[...]}``) whose rows have ``pattern`` and any of ``owner``, ``criticality``, ``zone``,
``description``. A pattern is one of:

- an IP address (``10.0.0.5``) — matches that address;
- a subnet in CIDR form (``10.20.0.0/16``) — matches addresses inside it;
- a glob (``web-*``, ``db-??.corp``) — matches host names, and addresses written as text;
- anything else is an exact host name, which also matches the short name of a FQDN
  (``web-1`` matches ``web-1.corp.example``).

Host names are compared without regard to case. The most specific row wins: an exact name
or address beats any glob, a glob with more literal characters beats a shorter one, and any
glob beats a subnet; among subnets the smallest (longest prefix) wins; on a tie, the row
that comes first in the file.

The file is read at start-up and again whenever its modification time, size or inode
changes, so editing it (or replacing it atomically) takes effect without a restart. A
malformed file raises ConfigError naming the row — at start-up, or at the next lookup
after a bad edit (every lookup keeps saying so until the file is fixed).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from pipeline.errors import ConfigError
from pipeline.observables import Kind
from pipeline.plugins import Context, lookups

NAME = "asset_inventory"
FIELDS = ("pattern", "owner", "criticality", "zone", "description")
_GLOB_CHARS = frozenset("*?[")
_EXTRA = "\x00extra"  # where csv.DictReader puts cells beyond the header
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# tiers of specificity: higher wins
_EXACT, _GLOB, _SUBNET = 3, 2, 1


@dataclass(frozen=True)
class Asset:
    """One row of the inventory, with its pattern already parsed."""

    row: int
    pattern: str
    facts: dict[str, str]
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    network: Network | None = None
    glob: bool = False

    def rank(self, kind: Kind, value: str) -> tuple[int, int] | None:
        """(tier, specificity) when this row matches ``value``; None when it does not."""
        ip = _ip(value)
        if self.address is not None:
            return (_EXACT, 0) if ip == self.address else None
        if self.network is not None:
            if ip is not None and ip.version == self.network.version and ip in self.network:
                return (_SUBNET, self.network.prefixlen)
            return None
        folded = value.casefold()
        pattern = self.pattern.casefold()
        if self.glob:
            if fnmatch.fnmatchcase(folded, pattern):
                return (_GLOB, sum(ch not in _GLOB_CHARS for ch in pattern))
            return None
        if kind == "host" and (folded == pattern or folded.split(".", 1)[0] == pattern):
            return (_EXACT, 0)
        return None


def parse_rows(rows: list[Any], source: str, lines: list[int] | None = None) -> list[Asset]:
    """Validate raw rows (mappings) into assets; ConfigError naming the first bad row
    (its position among the rows, and its line in the file when known)."""
    assets = []
    for number, row in enumerate(rows, start=1):
        where = f"{source}: row {number}"
        if lines is not None:
            where += f" (line {lines[number - 1]})"
        if not isinstance(row, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {', '.join(FIELDS)}")
        unknown = sorted(str(k) for k in row if k not in FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown column(s) {', '.join(unknown)}")
        values = {}
        for key, raw in row.items():
            if raw is not None and not isinstance(raw, str | int | float):
                raise ConfigError(f"{where}: {key} must be text")
            values[str(key)] = "" if raw is None else str(raw).strip()
        pattern = values.pop("pattern", "")
        if not pattern:
            raise ConfigError(f"{where}: pattern is empty")
        facts = {k: v for k, v in values.items() if v}
        if "criticality" in facts:
            facts["criticality"] = facts["criticality"].lower()
        assets.append(_asset(number, pattern, facts, where))
    return assets


def _asset(number: int, pattern: str, facts: dict[str, str], where: str) -> Asset:
    if "/" in pattern:
        try:
            network = ipaddress.ip_network(pattern, strict=True)
        except ValueError as exc:
            raise ConfigError(f"{where}: {pattern!r} is not a subnet: {exc}") from None
        return Asset(number, pattern, facts, network=network)
    address = _ip(pattern)
    if address is not None:
        return Asset(number, pattern, facts, address=address)
    if any(ch.isspace() for ch in pattern):
        raise ConfigError(f"{where}: pattern {pattern!r} contains spaces")
    return Asset(number, pattern, facts, glob=bool(_GLOB_CHARS & set(pattern)))


def load(path: Path) -> list[Asset]:
    """Read and validate the inventory file (CSV or YAML, by extension)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{NAME}: cannot read {path}: {exc}") from None
    if path.suffix.lower() in (".yml", ".yaml"):
        return parse_rows(_yaml_rows(text, path), str(path))
    if path.suffix.lower() == ".csv":
        rows, lines = _csv_rows(text, path)
        return parse_rows(rows, str(path), lines)
    raise ConfigError(f"{NAME}: {path} must end in .csv, .yml or .yaml")


def _yaml_rows(text: str, path: Path) -> list[Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{NAME}: {path} is not valid YAML: {exc}") from None
    if document is None:
        return []
    if isinstance(document, Mapping) and set(document) == {"assets"}:
        document = document["assets"] or []
    if not isinstance(document, list):
        raise ConfigError(f"{NAME}: {path} must hold a list of rows (or assets: [...])")
    return document


def _csv_rows(text: str, path: Path) -> tuple[list[Any], list[int]]:
    """The data rows as mappings, and the file line each ends on."""
    reader = csv.DictReader(io.StringIO(text), restkey=_EXTRA)
    try:
        header = [h.strip().lower() for h in reader.fieldnames or []]
    except csv.Error as exc:
        raise ConfigError(f"{NAME}: {path} is not valid CSV: {exc}") from None
    if "pattern" not in header:
        raise ConfigError(f"{NAME}: {path} needs a header row with a pattern column")
    reader.fieldnames = header
    rows: list[Any] = []
    lines: list[int] = []
    try:
        for number, row in enumerate(reader, start=1):
            if _EXTRA in row:
                raise ConfigError(
                    f"{path}: row {number} (line {reader.line_num}): "
                    "more cells than the header has columns"
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise ConfigError(f"{NAME}: {path} line {reader.line_num}: bad CSV: {exc}") from None
    return rows, lines


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"path": "bot/samples/assets.csv"}]}
    )

    path: Path  # the CSV or YAML file; read again whenever it changes


AssetInventoryOptions = Options  # the name the methods are annotated with


@lookups.register(NAME)
class AssetInventoryLookup:
    name = NAME
    kinds: frozenset[Kind] = frozenset({"host", "ip"})
    provider = NAME
    external = False
    Options = Options

    def __init__(self, *, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._assets: list[Asset] = []
        self._stamp: tuple[int, int, int] | None = None
        self._refresh()

    @classmethod
    def build(cls, options: AssetInventoryOptions, context: Context) -> AssetInventoryLookup:
        return cls(path=options.path)

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        value = value.strip()
        if kind not in self.kinds or not value:
            return None
        self._refresh()
        best: tuple[tuple[int, int], int, Asset] | None = None
        for asset in self._assets:
            rank = asset.rank(kind, value)
            if rank is not None and (best is None or (rank, -asset.row) > best[:2]):
                best = (rank, -asset.row, asset)
        if best is None:
            return None
        asset = best[2]
        return {**asset.facts, "pattern": asset.pattern}

    def _refresh(self) -> None:
        """Reload when the file changed since the last good read."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"{NAME}: cannot read {self.path}: {exc}") from None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            self._assets = load(self.path)
            self._stamp = stamp
