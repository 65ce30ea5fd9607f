"""Micro-batching: concurrent calls that arrive within a short window share one call.

Fido's single process runs many small, concurrent database operations — webhook
deliveries, the cache reads and writes of 32 lookups in flight — and on SQLite each
transaction also queues for the one connection. A :class:`Batcher` collects the items
submitted within ``window`` seconds and hands them to one ``run(items)`` that returns one
result per item, in order; each caller waits for its own. ``run`` usually makes one
transaction of the whole batch, so N callers cost one transaction instead of N.

The window is only waited for under load: after a quiet spell (nothing submitted for
``quiet`` seconds) the first batch runs at the loop's next turn, with whoever submitted in
the same turn, so a lone caller at low load pays no window at all. The spell is much
longer than the window: clients that each wait for their answer before sending again
leave gaps of a commit's length between batches, and those gaps are load, not quiet.

When ``run`` fails for a batch of several, every item is run again on its own, so one
bad item's failure is never its neighbours'. A caller that is cancelled (a client that
hung up) does not cancel the batch its item is in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(eq=False)
class _Waiting(Generic[In, Out]):
    item: In
    answer: asyncio.Future[Out] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher(Generic[In, Out]):
    def __init__(
        self,
        run: Callable[[list[In]], Awaitable[Sequence[Out]]],
        *,
        window: float = 0.002,
        quiet: float = 0.05,
        most: int = 1_000,
        size: Callable[[In], int] = lambda _: 1,
        name: str = "fido-batch",
    ) -> None:
        self.run = run
        self.window = window
        self.quiet = quiet
        self.most = most  # total size of one batch (at least one item, however large)
        self.size = size
        self.name = name
        self._waiting: list[_Waiting[In, Out]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._submitted = float("-inf")  # loop time of the last submission

    async def submit(self, item: In) -> Out:
        """``item``'s result, from the batch it joins (its own exception if it failed)."""
        waiting: _Waiting[In, Out] = _Waiting(item)
        self._waiting.append(waiting)
        now = asyncio.get_running_loop().time()
        if self._flusher is None or self._flusher.done():
            quiet = now - self._submitted > self.quiet
            self._flusher = asyncio.create_task(self._flush(quiet), name=self.name)
        self._submitted = now
        return await asyncio.shield(waiting.answer)

    async def _flush(self, quiet: bool) -> None:
        while self._waiting:
            await asyncio.sleep(0 if quiet else self.window)
            quiet = False
            batch: list[_Waiting[In, Out]] = []
            total = 0
            while self._waiting and (
                not batch or total + self.size(self._waiting[0].item) <= self.most
            ):
                waiting = self._waiting.pop(0)
                batch.append(waiting)
                total += self.size(waiting.item)
            await self._run(batch)

    async def _run(self, batch: list[_Waiting[In, Out]]) -> None:
        try:
            results = await self.run([w.item for w in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)}")
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            for waiting in batch:  # alone, so that one failure stays its own
                try:
                    (result,) = await self.run([waiting.item])
                except Exception as alone:
                    _settle(waiting, alone)
                else:
                    _settle(waiting, result)
        else:
            for waiting, result in zip(batch, results, strict=True):
                _settle(waiting, result)


def _settle(waiting: _Waiting[In, Out], outcome: Out | Exception) -> None:
    if waiting.answer.done():
        return
    if isinstance(outcome, Exception):
        waiting.answer.set_exception(outcome)
    else:
        waiting.answer.set_result(outcome)
