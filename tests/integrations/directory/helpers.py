"""Shared by the directory tests: unique names, and the enricher's facts in one call."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.directory import ActiveDirectory
from integrations.enrichers.active_directory import ActiveDirectoryEnricher
from pipeline.observables import Observables

PASSWORD = "Fido-User-Pw1!"
NORMAL, DISABLED, DONT_EXPIRE_PASSWORD = 0x200, 0x202, 0x10000


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"  # sAMAccountName holds at most 20 characters


async def enrich(
    directory: ActiveDirectory, *, users: Sequence[str] = (), hosts: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    observables = Observables(users=list(users), hosts=list(hosts))
    return await ActiveDirectoryEnricher(directory).enrich(observables)


async def user_facts(directory: ActiveDirectory, user: str) -> dict[str, Any]:
    return (await enrich(directory, users=[user]))[f"user:{user}"]


async def host_facts(directory: ActiveDirectory, host: str) -> dict[str, Any]:
    return (await enrich(directory, hosts=[host]))[f"host:{host}"]


def assert_recent(stamp: object, since: datetime) -> None:
    """``stamp`` is ISO 8601 UTC ("…Z") between ``since`` (less a second) and now."""
    assert isinstance(stamp, str) and stamp.endswith("Z"), stamp
    moment = datetime.fromisoformat(stamp)
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert since - timedelta(seconds=1) <= moment <= datetime.now(UTC) + timedelta(seconds=1)
