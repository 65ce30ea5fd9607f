"""Host facts from computer accounts in a real Samba AD DC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from integrations.directory import ActiveDirectory
from tests.fixtures.samba import SambaAD
from tests.integrations.directory.helpers import assert_recent, enrich, host_facts, unique

pytestmark = pytest.mark.samba

COMPUTER_PASSWORD = "Fido-Comp-Pw1!"


@dataclass(frozen=True)
class Fleet:
    laptop: str  # in Workstations/Finance, with everything set
    laptop_dn: str
    bare: str  # in CN=Computers, nothing but its name
    bare_dn: str


@pytest.fixture(scope="module")
def fleet(samba_ad: SambaAD) -> Fleet:
    laptop, bare = unique("FIN-"), unique("LAB-")
    laptop_dn = samba_ad.create_computer(
        laptop,
        ou="Workstations/Finance",
        operating_system="Windows 11 Enterprise",
        os_version="10.0 (22631)",
        description="Finance laptop, 3rd floor",
        dns_name=f"{laptop.lower()}.fido.test",
        password=COMPUTER_PASSWORD,
    )
    bare_dn = samba_ad.create_computer(bare)
    return Fleet(laptop, laptop_dn, bare, bare_dn)


async def test_computer_facts(fleet: Fleet, directory: ActiveDirectory) -> None:
    assert await host_facts(directory, fleet.laptop) == {
        "found": True,
        "dn": fleet.laptop_dn,
        "account": f"{fleet.laptop}$",
        "name": fleet.laptop,
        "dns_name": f"{fleet.laptop.lower()}.fido.test",
        "os": "Windows 11 Enterprise",
        "os_version": "10.0 (22631)",
        "description": "Finance laptop, 3rd floor",
        "ou": "Workstations/Finance",
        "disabled": False,
    }
    assert await host_facts(directory, fleet.bare) == {
        "found": True,
        "dn": fleet.bare_dn,
        "account": f"{fleet.bare}$",
        "name": fleet.bare,
        "ou": "Computers",
        "disabled": False,
    }


async def test_name_account_and_fqdn_find_the_same_computer(
    fleet: Fleet, directory: ActiveDirectory
) -> None:
    forms = [
        fleet.laptop,
        fleet.laptop.lower(),  # AD compares names case-insensitively
        f"{fleet.laptop}$",
        f"{fleet.laptop.lower()}.fido.test",  # by dNSHostName
        f"{fleet.bare.lower()}.fido.test",  # no dNSHostName: by name, in our own domain
        f"{fleet.bare.lower()}.fido.test.",  # a rooted FQDN
    ]
    facts = await enrich(directory, hosts=forms)
    dns = [facts[f"host:{form}"].get("dn") for form in forms]
    assert dns == [fleet.laptop_dn] * 4 + [fleet.bare_dn] * 2


@pytest.mark.parametrize(
    "host", ["nosuchpc", "nosuchpc$", "nosuchpc.fido.test", "203.0.113.7", "2001:db8::1"]
)
async def test_unknown_host_is_not_found(directory: ActiveDirectory, host: str) -> None:
    assert await enrich(directory, hosts=[host]) == {f"host:{host}": {"found": False}}


async def test_same_name_in_another_dns_domain_is_not_ours(
    fleet: Fleet, directory: ActiveDirectory
) -> None:
    host = f"{fleet.bare.lower()}.example.org"
    assert await host_facts(directory, host) == {"found": False}


async def test_disabled_computer(samba_ad: SambaAD, directory: ActiveDirectory) -> None:
    name = unique("OLD-")
    samba_ad.create_computer(name, disabled=True, description="retired")
    facts = await host_facts(directory, name)
    assert (facts["disabled"], facts["description"]) == (True, "retired")


async def test_last_logon_after_the_computer_binds(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("WS-")
    dn = samba_ad.create_computer(name, password=COMPUTER_PASSWORD)
    assert "last_logon" not in await host_facts(directory, name)
    before = datetime.now(UTC)
    assert samba_ad.bind_as(dn, COMPUTER_PASSWORD)["result"] == 0
    assert_recent((await host_facts(directory, name))["last_logon"], before)


async def test_users_and_hosts_in_one_enrichment(fleet: Fleet, directory: ActiveDirectory) -> None:
    facts = await enrich(directory, users=[fleet.laptop, "ghost"], hosts=[fleet.laptop])
    assert facts[f"user:{fleet.laptop}"] == {"found": False}  # a computer is not a person
    assert facts["user:ghost"] == {"found": False}
    assert facts[f"host:{fleet.laptop}"]["dn"] == fleet.laptop_dn
