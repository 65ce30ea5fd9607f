"""``log_only``: a responder that only says what it would do. For ``fido demo`` and for
trying a policy safely; it changes nothing anywhere."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.observables import Kind
from pipeline.plugins import Context, Impact, ResponderResult, person_details, responders

log = logging.getLogger(__name__)


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"target_kind": "user"}]}
    )

    target_kind: Kind = "user"  # what it pretends to act on


LogOnlyOptions = Options  # the name the methods are annotated with (see openvpn_kill_session)


@responders.register("log_only")
class LogOnlyResponder:
    name = "log_only"
    label = "disable"
    reversible = True
    # low: it changes nothing anywhere
    impact = Impact.low
    Options = Options

    def __init__(self, target_kind: Kind = "user") -> None:
        self.target_kind: Kind = target_kind  # per instance: the options say

    @classmethod
    def build(cls, options: LogOnlyOptions, context: Context) -> LogOnlyResponder:
        return cls(options.target_kind)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        return f"Record that Fido would {self.label} {target}{person_details(facts)} (log_only)"

    async def execute(self, target: str) -> ResponderResult:
        log.info("log_only: would %s %s %s", self.label, self.target_kind, target)
        return ResponderResult(
            summary=f"Recorded: would {self.label} {target} (log_only changes nothing)",
            undo_data={"target": target},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        return ResponderResult(summary=f"Recorded: would re-enable {target}")
