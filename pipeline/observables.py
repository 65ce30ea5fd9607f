"""Observables: the things an alert is about (users, hosts, IPs, hashes, domains, URLs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field, field_validator

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


class Observables(BaseModel):
    """Lists of distinct values by kind. Order of first appearance is kept."""

    users: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list)
    hashes: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)

    @field_validator("*", mode="after")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for value in values:
            value = value.strip()
            if value:
                seen.setdefault(value, None)
        return list(seen)

    def of(self, kind: Kind) -> list[str]:
        return list(getattr(self, _FIELDS[kind]))

    def items(self) -> Iterator[tuple[Kind, str]]:
        for kind in KINDS:
            for value in self.of(kind):
                yield kind, value

    def merge(self, other: Observables) -> Observables:
        return Observables(
            **{field: self.of(kind) + other.of(kind) for kind, field in _FIELDS.items()}
        )

    def is_empty(self) -> bool:
        return not any(True for _ in self.items())

    @staticmethod
    def key(kind: Kind, value: str) -> str:
        """The key enrichment facts are filed under, e.g. ``user:alice``."""
        return f"{kind}:{value}"
