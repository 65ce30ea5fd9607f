"""``fido serve`` with one extra lookup, ``bench_slow``, that sleeps FIDO_BENCH_ENRICH_MS ms.

Used by ``benchmarks/serve_load.py``. The slow enricher is a ``Lookup`` — internal (no
privacy screen), its own provider (no quota), wrapped like any other by ``LookupEnricher``
(cache, breaker) — built by the wiring (``bot/wiring.py``) like every plugin: from its
``Options`` (``delay_ms``, by default FIDO_BENCH_ENRICH_MS) and ``build``. The policy names
it: ``enrichers: [bench_slow]``.

    python benchmarks/_slow_serve.py        # same environment as ``fido serve``

FIDO_BENCH_PROFILE=FILE writes a cProfile of the serve's main thread (its event loop) there.
FIDO_BENCH_DOOR_ONLY=1 runs the webhook door alone (no worker, no outbox sender): what the
door can take when nothing else wants the CPU.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.observables import Kind  # noqa: E402
from pipeline.plugins import Context, lookups  # noqa: E402


class BenchSlowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_ms: float = Field(
        default_factory=lambda: float(os.environ.get("FIDO_BENCH_ENRICH_MS", "200")), ge=0
    )


@lookups.register("bench_slow")
class BenchSlowLookup:
    name = "bench_slow"
    kinds: frozenset[Kind] = frozenset({"user", "host"})
    provider = "bench_slow"
    external = False
    Options = BenchSlowOptions

    def __init__(self, delay: float) -> None:
        self.delay = delay

    @classmethod
    def build(cls, options: BenchSlowOptions, context: Context) -> BenchSlowLookup:
        return cls(options.delay_ms / 1000)

    async def lookup(self, kind: Kind, value: str) -> dict[str, Any] | None:
        await asyncio.sleep(self.delay)
        return {"bench": True}


if __name__ == "__main__":
    from bot import cli

    if os.environ.get("FIDO_BENCH_DOOR_ONLY"):  # the webhook door alone: no worker, no sender
        from pipeline.engine import Engine

        async def idle(self: Engine, stop: asyncio.Event, *, idle: float = 1.0) -> None:
            await stop.wait()

        Engine.run = idle  # type: ignore[method-assign]

    sys.argv = ["fido", "serve"]
    profile_to = os.environ.get("FIDO_BENCH_PROFILE")  # cProfile of the main thread, if set
    if not profile_to:
        cli.main()
    else:
        import cProfile

        profiler = cProfile.Profile()
        try:
            profiler.runcall(cli.main)
        except SystemExit:
            pass
        finally:
            profiler.dump_stats(profile_to)
