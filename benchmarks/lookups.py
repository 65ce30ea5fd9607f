"""What the lookup cache saves: N hashes enriched through the real LookupEnricher (privacy
screen, cache, quota, breaker) against an instantly answering provider, first uncached,
then again from the cache. Temporary SQLite database (or FIDO_DATABASE_URL).

    python benchmarks/lookups.py [N]
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import db as database
from pipeline.lookups.enricher import lookup_enrichers
from pipeline.observables import Kind, Observables
from pipeline.policy import Policy


class InstantProvider:
    """A Lookup that answers at once, so the figures are Fido's own overhead."""

    name = "instant"
    kinds: frozenset[Kind] = frozenset({"hash"})
    provider = "instant"
    external = True

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        return {"verdict": "clean", "detection_ratio": "0/70"}


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        database.upgrade(url)
        db = database.Database(url)
        [enricher] = lookup_enrichers([InstantProvider()], db=db, policy=Policy())
        hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(count)]
        observables = Observables(hashes=hashes)
        started = time.perf_counter()
        first = await enricher.enrich(observables)
        uncached = time.perf_counter() - started
        started = time.perf_counter()
        second = await enricher.enrich(observables)
        cached = time.perf_counter() - started
        await db.dispose()
    assert first == second and len(first) == count
    print(f"lookups uncached (sqlite): {uncached * 1000:.1f} ms for {count} hashes")
    print(f"lookups cached (sqlite): {cached * 1000:.1f} ms for {count} hashes")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
