from __future__ import annotations

from pipeline.db import Database
from pipeline.locks import lock_key, singleton


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("source:a") == lock_key("source:a")
    assert lock_key("source:a") != lock_key("source:b")
    assert -(2**63) <= lock_key("x") < 2**63


async def test_only_one_holder_at_a_time(db: Database) -> None:
    other = Database(db.url)  # a second replica on the same database
    try:
        async with singleton(db, "job") as first:
            async with singleton(other, "job") as second:
                async with singleton(other, "another-job") as unrelated:
                    assert first and unrelated
                    # SQLite means one process, so there the lock is always granted
                    assert second is db.sqlite
        async with singleton(other, "job") as after_release:
            assert after_release
    finally:
        await other.dispose()
