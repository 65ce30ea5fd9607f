"""``static_directory``: a directory held in memory, for ``fido demo`` and offline trials.

It answers exactly like the Active Directory enricher does, from a mapping of account
name → attributes, so the rest of the pipeline cannot tell the difference::

    enrichers: [static_directory]
    enricher_options:
      static_directory:
        users: {alice: {display_name: Alice Example, department: Finance, privileged: false}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.observables import Observables, account_name
from pipeline.plugins import Context, Facts, enrichers


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"users": {"alice": {"display_name": "Alice Example", "department": "Finance"}}}
            ]
        },
    )

    users: dict[str, dict[str, Any]] = Field(default_factory=dict)  # account → its facts


StaticDirectoryOptions = Options  # the name the methods are annotated with


@enrichers.register("static_directory")
class StaticDirectoryEnricher:
    name = "static_directory"
    Options = Options

    def __init__(self, users: Mapping[str, Mapping[str, Any]]) -> None:
        self.users = {name.casefold(): dict(attrs) for name, attrs in users.items()}

    @classmethod
    def build(cls, options: StaticDirectoryOptions, context: Context) -> StaticDirectoryEnricher:
        return cls(options.users)

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
