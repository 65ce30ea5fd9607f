from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integrations.enrichers.external.vendor import FakeVendor


@pytest.fixture
async def vendor() -> AsyncIterator[FakeVendor]:
    fake = FakeVendor()
    yield fake
    await fake.http.aclose()
