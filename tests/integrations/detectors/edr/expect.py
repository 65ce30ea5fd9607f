"""Helpers for the EDR parser tests: read a payload file, and sum an event up as a plain
dict so a test can state the exact normalised event it expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.plugins import ParsedEvent

PAYLOADS = Path(__file__).parent / "payloads"


def payload(vendor: str, name: str) -> bytes:
    return (PAYLOADS / vendor / name).read_bytes()


def summary(event: ParsedEvent) -> dict[str, Any]:
    """Every normalised field but the raw payload; observables only where present
    (``hash_types`` is derived from ``hashes`` and checked on its own)."""
    observed = event.observables.model_dump(exclude={"hash_types"})
    return {
        "external_id": event.external_id,
        "title": event.title,
        "severity": event.severity,
        "vendor_severity": event.vendor_severity,
        "occurred_at": event.occurred_at,
        **{kind: values for kind, values in observed.items() if values},
    }
