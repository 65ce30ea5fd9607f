"""Observables: the things an alert is about (users, hosts, IPs, hashes, domains, URLs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Kind = Literal["user", "host", "ip", "hash", "domain", "url"]
KINDS: tuple[Kind, ...] = ("user", "host", "ip", "hash", "domain", "url")
_FIELDS: dict[Kind, str] = {
    "user": "users",
    "host": "hosts",
    "ip": "ips",
    "hash": "hashes",
    "domain": "domains",
    "url": "urls",
}


def account_name(user: str) -> str:
    """The bare account of ``DOMAIN\\user``, ``user@domain`` or ``user``, case-folded."""
    return user.rsplit("\\", 1)[-1].split("@", 1)[0].strip().casefold()


_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}
_HEX = frozenset("0123456789abcdefABCDEF")


def hash_type(value: str) -> str | None:
    """``md5``, ``sha1`` or ``sha256`` by length, for a hex string; else None."""
    if not set(value) <= _HEX:
        return None
    return _HASH_LENGTHS.get(len(value))


class Observables(BaseModel):
    """Distinct values by kind (order of first appearance kept), plus their roles.

    ``ips`` holds every IP; ``src_ips`` and ``dst_ips`` say which were the source or the
    destination. ``hash_types`` labels each hash (md5, sha1, sha256). ``processes`` and
    ``files`` carry process and file names where the detector gives them.
    """

    users: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list)
    hashes: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    src_ips: list[str] = Field(default_factory=list)
    dst_ips: list[str] = Field(default_factory=list)
    processes: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    hash_types: dict[str, str] = Field(default_factory=dict)

    @field_validator(
        "users",
        "hosts",
        "ips",
        "hashes",
        "domains",
        "urls",
        "src_ips",
        "dst_ips",
        "processes",
        "files",
        mode="after",
    )
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for value in values:
            value = value.strip()
            if value:
                seen.setdefault(value, None)
        return list(seen)

    @model_validator(mode="after")
    def _roles_and_labels(self) -> Observables:
        for ip in self.src_ips + self.dst_ips:
            if ip not in self.ips:
                self.ips.append(ip)
        self.hash_types = {h: label for h in self.hashes if (label := hash_type(h)) is not None}
        return self

    def of(self, kind: Kind) -> list[str]:
        return list(getattr(self, _FIELDS[kind]))

    def items(self) -> Iterator[tuple[Kind, str]]:
        for kind in KINDS:
            for value in self.of(kind):
                yield kind, value

    def merge(self, other: Observables) -> Observables:
        lists = (
            "users",
            "hosts",
            "ips",
            "hashes",
            "domains",
            "urls",
            "src_ips",
            "dst_ips",
            "processes",
            "files",
        )
        return Observables(**{f: getattr(self, f) + getattr(other, f) for f in lists})

    def is_empty(self) -> bool:
        return not any(True for _ in self.items())

    @staticmethod
    def key(kind: Kind, value: str) -> str:
        """The key enrichment facts are filed under, e.g. ``user:alice``."""
        return f"{kind}:{value}"
