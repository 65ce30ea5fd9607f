"""Plugins registered under test names: real plugins, with behaviour the tests control."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.errors import IntegrationError, ResponderError
from pipeline.observables import Kind, Observables
from pipeline.plugins import Facts, ResponderResult, enrichers, responders


@enrichers.register("test_directory")
class DirectoryEnricher:
    """Knows the users it is given; can be told to fail or hang."""

    name = "test_directory"

    def __init__(
        self, users: dict[str, dict[str, Any]], *, fail: bool = False, delay: float = 0.0
    ) -> None:
        self.users, self.fail, self.delay = users, fail, delay
        self.calls: list[Observables] = []

    async def enrich(self, observables: Observables) -> Facts:
        self.calls.append(observables)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise IntegrationError("directory unreachable")
        return {
            Observables.key("user", u): (
                {"found": True, **self.users[u]} if u in self.users else {"found": False}
            )
            for u in observables.users
        }


@responders.register("test_lock")
class LockResponder:
    """Keeps a set of locked targets, like a tiny directory would."""

    name = "test_lock"
    label = "lock"
    target_kind: Kind = "user"
    reversible = True
    impact = "low"  # one approver (the action rule may ask for two)

    def plan(self, target: str, facts: object = None) -> str:
        return f"Lock {target}"

    def __init__(self, *, fail: bool = False) -> None:
        self.locked: set[str] = set()
        self.executions: list[str] = []
        self.fail = fail

    async def execute(self, target: str) -> ResponderResult:
        self.executions.append(target)
        if self.fail:
            raise ResponderError(f"cannot lock {target}")
        self.locked.add(target)
        return ResponderResult(summary=f"locked {target}", undo_data={"was_locked": False})

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        self.locked.discard(target)
        return ResponderResult(summary=f"unlocked {target}")
