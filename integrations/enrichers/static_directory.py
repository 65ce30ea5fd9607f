"""``static_directory``: a directory held in memory, for ``fido demo`` and offline trials.

It answers exactly like the Active Directory enricher does, from a mapping of account
name → attributes, so the rest of the pipeline cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.observables import Observables, account_name
from pipeline.plugins import Facts, enrichers


@enrichers.register("static_directory")
class StaticDirectoryEnricher:
    name = "static_directory"

    def __init__(self, users: Mapping[str, Mapping[str, Any]]) -> None:
        self.users = {name.casefold(): dict(attrs) for name, attrs in users.items()}

    async def enrich(self, observables: Observables) -> Facts:
        facts: Facts = {}
        for user in observables.users:
            attrs = self.users.get(account_name(user))
            key = Observables.key("user", user)
            if attrs is None:
                facts[key] = {"found": False}
            else:
                facts[key] = {"found": True, "account": account_name(user), **attrs}
        return facts
