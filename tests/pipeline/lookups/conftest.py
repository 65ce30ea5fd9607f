from __future__ import annotations

import pytest

from tests.pipeline.lookups.fakes import Clock, Sleeps


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
