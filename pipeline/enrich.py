"""Enrich: every enricher runs concurrently, each bounded by the policy's timeout.

The stage takes as long as the slowest enricher (or the timeout), not the sum. A failed or
timed-out enricher is recorded with its error and the incident is marked degraded; the
pipeline goes on with what the others found.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pipeline.errors import FidoError
from pipeline.observables import Observables
from pipeline.plugins import Enricher
from pipeline.records import Enrichment, EnrichmentResult, EnrichmentStatus

log = logging.getLogger(__name__)


async def _one(enricher: Enricher, observables: Observables, timeout: float) -> EnrichmentResult:
    try:
        facts = await asyncio.wait_for(enricher.enrich(observables), timeout)
    except TimeoutError:
        log.warning("enricher %s timed out after %.1fs", enricher.name, timeout)
        return EnrichmentResult(
            status=EnrichmentStatus.timeout, error=f"timed out after {timeout:g}s"
        )
    except FidoError as exc:
        log.warning("enricher %s failed: %s", enricher.name, exc)
        return EnrichmentResult(status=EnrichmentStatus.error, error=str(exc))
    except Exception as exc:  # an enricher's bug must not stop the pipeline
        log.exception("enricher %s crashed", enricher.name)
        return EnrichmentResult(status=EnrichmentStatus.error, error=f"{type(exc).__name__}: {exc}")
    return EnrichmentResult(status=EnrichmentStatus.ok, facts=facts)


async def enrich(
    enrichers: Sequence[Enricher], observables: Observables, *, timeout: float
) -> Enrichment:
    """Run every enricher on ``observables``; return each one's result by name."""
    results = await asyncio.gather(*(_one(e, observables, timeout) for e in enrichers))
    return {e.name: r for e, r in zip(enrichers, results, strict=True)}


def merge(previous: Enrichment, new: Enrichment) -> Enrichment:
    """Fold a new round of results into an incident's enrichment (newer facts win)."""
    merged = dict(previous)
    for name, result in new.items():
        old = merged.get(name)
        facts = {**(old.facts if old else {}), **result.facts}
        merged[name] = result.model_copy(update={"facts": facts})
    return merged


def is_degraded(enrichment: Enrichment) -> bool:
    return any(not r.ok for r in enrichment.values())


def facts_for(enrichment: Enrichment, key: str) -> dict[str, Any]:
    """All enrichers' facts about one observable key, merged."""
    combined: dict[str, Any] = {}
    found = False
    for result in enrichment.values():
        facts = result.facts.get(key, {})
        combined.update(facts)
        found = found or facts.get("found") is True
    if found:  # one source knowing the value beats another not knowing it
        combined["found"] = True
    return combined
