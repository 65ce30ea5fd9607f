"""Fixtures for the directory tests: a small organisation in the session's Samba AD DC
(tests/fixtures/samba.py), created once for the package, and a client per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from integrations.directory import ActiveDirectory
from tests.fixtures.samba import SambaAD
from tests.integrations.directory.helpers import PASSWORD, unique


@dataclass(frozen=True)
class Org:
    boss: str
    boss_dn: str
    alice: str
    alice_dn: str
    alice_mail: str
    plain: str
    plain_dn: str
    groups: tuple[str, str]
    created: datetime  # just before the users were


@pytest.fixture(scope="package")
def org(samba_ad: SambaAD) -> Org:
    created = datetime.now(UTC)
    boss, alice, plain = unique("boss"), unique("alice"), unique("plain")
    groups = (unique("VPN Users "), unique("analysts "))
    for group in groups:
        samba_ad.create_group(group)
    boss_dn = samba_ad.create_user(boss, PASSWORD, display_name="Mary Boss")
    alice_mail = f"a.example.{alice}@example.org"
    alice_dn = samba_ad.create_user(
        alice,
        PASSWORD,
        display_name="Alice Example",
        mail=alice_mail,
        title="Engineer",
        department="Platform",
        manager=boss,
        groups=groups,
    )
    plain_dn = samba_ad.create_user(plain, PASSWORD)
    return Org(boss, boss_dn, alice, alice_dn, alice_mail, plain, plain_dn, groups, created)


@pytest.fixture
async def directory(samba_ad: SambaAD) -> AsyncIterator[ActiveDirectory]:
    async with ActiveDirectory(samba_ad.config()) as ad:
        yield ad
