"""The outbox sender as ``fido serve`` runs it: deliveries stay in flight side by side, a
slow one never holds up the rows behind it, and on stop the ones in flight finish."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from pipeline import outbox
from pipeline.db import Database
from pipeline.models import OutboxMessage, OutboxStatus


async def test_a_slow_delivery_holds_up_no_other_row(db: Database) -> None:
    async with db.session() as session:
        for n in range(6):
            outbox.enqueue_notice(session, f"notice {n}")
        await session.commit()
    slow_started, release = asyncio.Event(), asyncio.Event()
    delivered: list[str] = []

    async def deliver(row: OutboxMessage) -> None:
        text = str(row.payload["text"])
        if text == "notice 0":  # the first row hangs until the others are through
            slow_started.set()
            await release.wait()
        delivered.append(text)

    sender = outbox.Sender(db=db, deliver=deliver, concurrency=4)
    stop = asyncio.Event()
    running = asyncio.create_task(sender.run(stop, idle=0.05))
    try:
        await asyncio.wait_for(slow_started.wait(), 5)
        for _ in range(200):  # the five others go while the first is still in flight
            if len(delivered) == 5:
                break
            await asyncio.sleep(0.02)
        assert sorted(delivered) == [f"notice {n}" for n in range(1, 6)]
        stop.set()  # stopping waits for the delivery in flight …
        await asyncio.sleep(0.1)
        assert not running.done()
        release.set()
        await asyncio.wait_for(running, 5)  # … which then finishes and is recorded
    finally:
        stop.set()
        release.set()
        await asyncio.wait_for(running, 5)
    assert delivered[-1] == "notice 0"
    async with db.session() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    assert {r.status for r in rows} == {OutboxStatus.sent.value}
