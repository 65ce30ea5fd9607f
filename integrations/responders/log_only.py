"""``log_only``: a responder that only says what it would do. For ``fido demo`` and for
trying a policy safely; it changes nothing anywhere."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.observables import Kind
from pipeline.plugins import ResponderResult, responders

log = logging.getLogger(__name__)


@responders.register("log_only")
class LogOnlyResponder:
    name = "log_only"
    label = "disable"

    def __init__(self, target_kind: Kind = "user") -> None:
        self.target_kind: Kind = target_kind

    async def execute(self, target: str) -> ResponderResult:
        log.info("log_only: would %s %s %s", self.label, self.target_kind, target)
        return ResponderResult(
            summary=f"Recorded: would {self.label} {target} (log_only changes nothing)",
            undo_data={"target": target},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        return ResponderResult(summary=f"Recorded: would re-enable {target}")
