"""Values from alerts go into LDAP filters escaped: they match literally, never widen."""

from __future__ import annotations

import pytest

from integrations.directory import ActiveDirectory
from tests.fixtures.samba import SambaAD
from tests.integrations.directory.conftest import Org
from tests.integrations.directory.helpers import PASSWORD, enrich, unique, user_facts

pytestmark = pytest.mark.samba

HOSTILE = ["*", ")(", "\\", "\x00", "a\x00b", "*)(|(objectClass=*", "adm*", "a*)(cn=*"]


@pytest.mark.parametrize(
    "account", [*HOSTILE, "*@fido.test", "FIDO\\*", "*@*", "FIDO\\a*)(cn=*", "\\*"]
)
async def test_hostile_user_values_match_nothing(
    org: Org, directory: ActiveDirectory, account: str
) -> None:
    assert await directory.find_user(account) is None
    assert await directory.describe_user(account) is None
    assert await enrich(directory, users=[account]) == {f"user:{account}": {"found": False}}


@pytest.fixture(scope="module")
def decoy(samba_ad: SambaAD) -> str:
    """A computer a wildcard would find."""
    name = unique("FIN-")
    samba_ad.create_computer(name, dns_name=f"{name.lower()}.fido.test")
    return name


@pytest.mark.parametrize("host", [*HOSTILE, "*$", "*.fido.test", "FIN-*", "*)(cn=*$"])
async def test_hostile_host_values_match_nothing(
    decoy: str, directory: ActiveDirectory, host: str
) -> None:
    assert await directory.find_computer(decoy) is not None
    assert await directory.find_computer(host) is None


async def test_special_characters_match_literally(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("p(x)")
    dn = samba_ad.create_user(name, PASSWORD)
    user = await directory.find_user(name)
    assert user is not None and user["dn"] == dn


async def test_a_dn_with_filter_characters_in_the_in_chain_query(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    """A CN holding ``*``, parentheses, a backslash and a comma: unescaped in the in-chain
    query it would be a wildcard, a broken filter, or someone else's groups."""
    tag = unique("")
    mine, theirs = unique("mine "), unique("theirs ")
    samba_ad.create_group(mine)
    samba_ad.create_group(theirs)
    name = unique("odd")
    dn = samba_ad.create_user(name, PASSWORD, cn=f"Odd*(x)\\y, z {tag}", groups=[mine])
    samba_ad.create_user(unique("odd"), PASSWORD, cn=f"Odd*(x)\\y, z {tag}-2", groups=[theirs])
    samba_ad.create_user(unique("odd"), PASSWORD, cn=f"Odd{tag}", groups=[theirs])

    facts = await user_facts(directory, name)
    assert facts["dn"] == dn
    assert facts["groups"] == [mine]
