"""The micro-batcher: concurrent calls share one run, each gets its own answer, one bad
item fails alone, and a caller that gives up never cancels its neighbours."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.batching import Batcher


class Doubler:
    """Doubles numbers in batches; a negative number breaks the whole batch."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await asyncio.sleep(self.delay)
        if any(i < 0 for i in items):
            raise ValueError(f"negative in {items}")
        return [i * 2 for i in items]


async def test_concurrent_calls_share_one_run_and_keep_their_own_answer() -> None:
    run = Doubler()
    batcher = Batcher(run, window=0.01)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(20))) == [
        i * 2 for i in range(20)
    ]
    assert run.batches == [list(range(20))]


async def test_one_bad_item_fails_alone() -> None:
    run = Doubler()
    batcher = Batcher(run, window=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, -1, 3)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError) and "[-1]" in str(results[1])
    assert run.batches == [[1, -1, 3], [1], [-1], [3]]


async def test_batches_stay_within_their_size_and_take_at_least_one_item() -> None:
    run = Doubler()
    batcher = Batcher(run, window=0.01, most=10, size=lambda i: i)
    assert await asyncio.gather(*(batcher.submit(i) for i in (4, 4, 4, 30))) == [8, 8, 8, 60]
    assert run.batches == [[4, 4], [4], [30]]


async def test_a_caller_that_gives_up_does_not_cancel_the_batch() -> None:
    run = Doubler(delay=0.05)
    batcher = Batcher(run, window=0.001)
    quitter = asyncio.create_task(batcher.submit(1))
    stayer = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.02)  # both are in the running batch
    quitter.cancel()
    assert await stayer == 4
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert run.batches == [[1, 2]]


async def test_a_run_that_answers_for_the_wrong_number_of_items_is_an_error() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    batcher = Batcher(short, window=0.001)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert results == [1, 2]  # retried alone, where one answer per item is right
    lone = Batcher(short, window=0.001)
    assert await lone.submit(7) == 7


async def test_a_lone_call_after_a_quiet_spell_waits_for_no_window() -> None:
    run = Doubler()
    batcher = Batcher(run, window=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await batcher.submit(1) == 2
    assert loop.time() - started < 0.25  # ran at the next turn, not after the window
    # under load (a call came within the window) the window gathers the next callers
    started = loop.time()
    first = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(batcher.submit(3))
    assert await asyncio.gather(first, second) == [4, 6]
    assert loop.time() - started >= 0.45
    assert run.batches == [[1], [2, 3]]
