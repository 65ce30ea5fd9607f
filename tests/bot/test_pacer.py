"""The Pacer's token buckets, on a controllable clock: each Web API method within its
tier, each viewer's App Home within its own allowance, and a ``Retry-After`` holding
only what it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.slack.notifier import PER_VIEWER, TIERS, Pacer, home_keys


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_burst_of_chat_updates_past_its_budget_is_held_for_the_right_time(
    clock: Clock,
) -> None:
    pacer = Pacer(clock=clock)
    assert TIERS["chat.update"] == (50 / 60, 5)  # tier 3: 50 a minute, bursts of 5
    assert [pacer.take("chat.update") for _ in range(5)] == [0.0] * 5
    assert pacer.take("chat.update") == pytest.approx(60 / 50)  # one allowance: 1.2 s
    assert pacer.take("chat.update") == pytest.approx(1.2)  # a refused call costs nothing
    clock.advance(0.6)
    assert pacer.take("chat.update") == pytest.approx(0.6)
    clock.advance(0.6)
    assert pacer.take("chat.update") == 0.0
    assert pacer.take("chat.update") == pytest.approx(1.2)
    # other methods and channels have budgets of their own
    assert pacer.take("conversations.open") == 0.0
    assert pacer.take("chat.postMessage", "channel:C1") == 0.0
    clock.advance(60)  # refilled to the burst, no further
    assert [pacer.take("chat.update") for _ in range(6)][-2:] == [0.0, pytest.approx(1.2)]


def test_sustained_chat_updates_keep_to_fifty_a_minute(clock: Clock) -> None:
    pacer = Pacer(clock=clock)
    sent = 0
    for _ in range(600):  # one attempt every 0.1 s for a minute
        if pacer.take("chat.update") == 0.0:
            sent += 1
        clock.advance(0.1)
    assert sent == 5 + 50 - 1  # the burst, then one every 1.2 s


def test_each_viewer_has_an_allowance_and_views_publish_a_tier(clock: Clock) -> None:
    pacer = Pacer(clock=clock)
    rate, burst = PER_VIEWER
    assert TIERS["views.publish"] == (100 / 60, 10)  # tier 4: 100+ a minute
    assert [pacer.take(*home_keys("UA")) for _ in range(int(burst))] == [0.0] * int(burst)
    assert pacer.take(*home_keys("UA")) == pytest.approx(1 / rate)  # 3 s
    for user in ("UB", "UC", "UD", "UE", "UF"):  # others are drawn until the method's 10
        assert pacer.take(*home_keys(user)) == 0.0
    assert pacer.take(*home_keys("UG")) == pytest.approx(60 / 100)
    clock.advance(0.6)
    assert pacer.take(*home_keys("UG")) == 0.0


def test_retry_after_holds_what_it_names_and_nothing_else(clock: Clock) -> None:
    pacer = Pacer(clock=clock)
    pacer.hold(2, *home_keys("UA"))
    assert pacer.take(*home_keys("UB")) == pytest.approx(2)  # the method is held for all
    assert pacer.take("chat.update") == 0.0
    clock.advance(2)
    assert pacer.take(*home_keys("UB")) == 0.0
