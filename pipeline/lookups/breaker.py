"""A circuit breaker per provider: stop calling a provider that keeps failing.

Closed, it lets every call through and counts consecutive failures; at the policy's
``breaker_failures`` it opens and refuses calls for ``breaker_cooldown_seconds``. Then it is
half-open: one trial call goes through while the other callers wait for its result; its
success closes the breaker, its failure opens it for another cool-down.

Breakers live in the process: each replica learns for itself that a provider is down, which
costs at most ``breaker_failures`` calls per replica and needs no database round trip.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from enum import StrEnum

from pipeline.clock import Clock, system_clock
from pipeline.policy import LookupsPolicy


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class Breaker:
    def __init__(self, *, failures: int, cooldown: timedelta, clock: Clock = system_clock):
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self._opened_at: datetime | None = None
        self._trial = False  # a half-open trial call is in flight
        self._settled = asyncio.Event()  # set when the trial call is over

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.closed
        if self.clock() < self._opened_at + self.cooldown:
            return BreakerState.open
        return BreakerState.half_open

    def retry_at(self) -> datetime | None:
        """When an open breaker lets a trial call through; None when it is not open."""
        if self.state is not BreakerState.open:
            return None
        assert self._opened_at is not None
        return self._opened_at + self.cooldown

    def allow(self) -> bool:
        """May a call be made now? In half-open state only the first caller may."""
        state = self.state
        if state is BreakerState.closed:
            return True
        if state is BreakerState.open or self._trial:
            return False
        self._trial = True
        self._settled = asyncio.Event()
        return True

    @property
    def trial_in_flight(self) -> bool:
        return self._trial

    async def trial_over(self) -> None:
        """Wait until the half-open trial call has succeeded, failed or been released."""
        if self._trial:
            await self._settled.wait()

    def release(self) -> None:
        """The allowed call was not made after all (e.g. no quota left): free the trial."""
        self._end_trial()

    def success(self) -> None:
        self.failures, self._opened_at = 0, None
        self._end_trial()

    def failure(self) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.threshold:
            self._opened_at = self.clock()
        self._end_trial()

    def _end_trial(self) -> None:
        if self._trial:
            self._trial = False
            self._settled.set()


class Breakers:
    """One breaker per provider, configured from the policy, shared by its enrichers."""

    def __init__(self, policy: LookupsPolicy, *, clock: Clock = system_clock) -> None:
        self.policy = policy
        self.clock = clock
        self._breakers: dict[str, Breaker] = {}

    def get(self, provider: str) -> Breaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            settings = self.policy.provider(provider)
            breaker = Breaker(
                failures=settings.breaker_failures,
                cooldown=timedelta(seconds=settings.breaker_cooldown_seconds),
                clock=self.clock,
            )
            self._breakers[provider] = breaker
        return breaker
