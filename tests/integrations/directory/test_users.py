"""User facts from a real Samba AD DC: identity, nested groups, privilege, account state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.directory import ActiveDirectory
from tests.fixtures.samba import SambaAD
from tests.integrations.directory.conftest import Org
from tests.integrations.directory.helpers import (
    DISABLED,
    PASSWORD,
    assert_recent,
    enrich,
    unique,
    user_facts,
)

pytestmark = pytest.mark.samba

PRIVILEGED = [
    "Domain Admins",
    "Enterprise Admins",
    "Schema Admins",
    "Administrators",
    "Account Operators",
    "Backup Operators",
    "Server Operators",
    "Print Operators",
]


async def test_enrich_reports_who_the_user_is(org: Org, directory: ActiveDirectory) -> None:
    facts = await user_facts(directory, org.alice)
    assert_recent(facts.pop("password_last_set"), org.created)
    assert facts == {
        "found": True,
        "dn": org.alice_dn,
        "account": org.alice,
        "display_name": "Alice Example",
        "mail": org.alice_mail,
        "title": "Engineer",
        "department": "Platform",
        "manager": org.boss_dn,
        "manager_name": "Mary Boss",
        "groups": [org.groups[1], org.groups[0]],  # sorted, case-insensitively
        "primary_group": "Domain Users",
        "privileged": False,
        "privileged_groups": [],
        "disabled": False,
        "locked": False,
    }


async def test_missing_attributes_are_absent(
    samba_ad: SambaAD, org: Org, directory: ActiveDirectory
) -> None:
    report = unique("rep")
    before = datetime.now(UTC)
    dn = samba_ad.create_user(report, PASSWORD, manager=org.plain)  # a manager with no name
    facts = await enrich(directory, users=[org.plain, report])
    common = {
        "found": True,
        "groups": [],
        "primary_group": "Domain Users",
        "privileged": False,
        "privileged_groups": [],
        "disabled": False,
        "locked": False,
    }
    plain, rep = facts[f"user:{org.plain}"], facts[f"user:{report}"]
    assert_recent(plain.pop("password_last_set"), org.created)
    assert_recent(rep.pop("password_last_set"), before)
    assert plain == common | {"dn": org.plain_dn, "account": org.plain}
    assert rep == common | {"dn": dn, "account": report, "manager": org.plain_dn}


async def test_nested_groups_come_from_one_in_chain_query(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    g1, g2, h1, h2 = unique("G1 "), unique("G2 "), unique("H1 "), unique("H2 ")
    samba_ad.create_group(g2, member_of=["Domain Admins"])
    samba_ad.create_group(g1, member_of=[g2])
    samba_ad.create_group(h2)
    samba_ad.create_group(h1, member_of=[h2])
    admin, staff = unique("nest"), unique("staff")
    samba_ad.create_user(admin, PASSWORD, groups=[g1])
    samba_ad.create_user(staff, PASSWORD, groups=[h1])

    facts = await enrich(directory, users=[admin, staff])
    nested = facts[f"user:{admin}"]
    assert {g1, g2, "Domain Admins", "Administrators"} <= set(nested["groups"])
    assert nested["groups"] == sorted(nested["groups"], key=str.casefold)
    assert nested["privileged"] is True
    # Domain Admins is itself a member of Administrators: both are named.
    assert nested["privileged_groups"] == ["Administrators", "Domain Admins"]
    plain = facts[f"user:{staff}"]
    assert sorted(plain["groups"]) == sorted([h1, h2])
    assert (plain["privileged"], plain["privileged_groups"]) == (False, [])


@pytest.mark.parametrize("group", PRIVILEGED)
async def test_members_of_admin_groups_are_privileged(
    samba_ad: SambaAD, directory: ActiveDirectory, group: str
) -> None:
    name = unique("adm")
    samba_ad.create_user(name, PASSWORD, groups=[group])
    facts = await user_facts(directory, name)
    assert group in facts["groups"] and group in facts["privileged_groups"]
    assert facts["privileged"] is True


async def test_a_privileged_primary_group_counts(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    tier0 = unique("Tier0 ")
    tier0_dn = samba_ad.create_group(tier0, member_of=["Domain Admins"])
    name = unique("prim")
    dn = samba_ad.create_user(name, PASSWORD, groups=[tier0])
    rid = samba_ad.read(tier0_dn, "primaryGroupToken")["primaryGroupToken"][0]
    samba_ad.set_attribute(dn, "primaryGroupID", str(rid))

    facts = await user_facts(directory, name)
    assert facts["primary_group"] == tier0
    # Membership through a primary group is not in `member`: only the primary group's own
    # in-chain query finds Domain Admins.
    assert not {tier0, "Domain Admins"} & set(facts["groups"])
    assert facts["privileged"] is True
    assert facts["privileged_groups"] == ["Administrators", "Domain Admins"]


async def test_disabled_account_is_reported(samba_ad: SambaAD, directory: ActiveDirectory) -> None:
    name = unique("off")
    dn = samba_ad.create_user(name, PASSWORD)
    assert (await user_facts(directory, name))["disabled"] is False
    samba_ad.set_user_account_control(dn, DISABLED)
    assert (await user_facts(directory, name))["disabled"] is True


async def test_locked_out_account_is_reported(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("lock")
    dn = samba_ad.create_user(name, PASSWORD)
    upn = f"{name}@fido.test"
    samba_ad.lockout_policy(dn, threshold=2)  # only this account can be locked out
    assert (await user_facts(directory, name))["locked"] is False
    for _ in range(2):
        assert "data 52e" in samba_ad.bind_as(upn, "Not-The-Pw-42")["message"]
    assert "data 775" in samba_ad.bind_as(upn, PASSWORD)["message"]  # locked out
    assert (await user_facts(directory, name))["locked"] is True

    samba_ad.set_attribute(dn, "lockoutTime", "0")  # an administrator unlocks it
    assert (await user_facts(directory, name))["locked"] is False
    assert samba_ad.bind_as(upn, PASSWORD)["result"] == 0


async def test_last_logon_after_a_real_bind(samba_ad: SambaAD, directory: ActiveDirectory) -> None:
    name = unique("seen")
    samba_ad.create_user(name, PASSWORD)
    assert "last_logon" not in await user_facts(directory, name)  # never logged on
    before = datetime.now(UTC)
    assert samba_ad.bind_as(f"{name}@fido.test", PASSWORD)["result"] == 0
    assert_recent((await user_facts(directory, name))["last_logon"], before)


async def test_password_last_set_follows_a_reset(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("pwd")
    dn = samba_ad.create_user(name, PASSWORD)
    first = (await user_facts(directory, name))["password_last_set"]
    samba_ad.set_attribute(dn, "pwdLastSet", "0")  # "must change password at next logon"
    assert "password_last_set" not in await user_facts(directory, name)
    before = datetime.now(UTC)
    samba_ad.set_attribute(dn, "pwdLastSet", "-1")  # stamps the current time
    after = (await user_facts(directory, name))["password_last_set"]
    assert_recent(after, before)
    assert after >= first


async def test_unknown_user_is_not_found(directory: ActiveDirectory) -> None:
    assert await enrich(directory, users=["nosuchuser"]) == {"user:nosuchuser": {"found": False}}


async def test_domain_upn_and_mail_forms_find_the_same_user(
    org: Org, directory: ActiveDirectory
) -> None:
    forms = [f"FIDO\\{org.alice}", f"{org.alice}@fido.test", org.alice_mail, org.alice, org.boss]
    facts = await enrich(directory, users=forms)
    assert [facts[f"user:{form}"]["dn"] for form in forms] == [org.alice_dn] * 4 + [org.boss_dn]
    assert [facts[f"user:{form}"]["account"] for form in forms] == [org.alice] * 4 + [org.boss]


async def test_many_users_at_once_share_one_connection(
    org: Org, directory: ActiveDirectory
) -> None:
    await user_facts(directory, org.plain)
    connection = directory._ldap._conn  # white-box: the one bound connection
    users = [org.alice, org.boss, org.plain] * 5 + [f"{org.alice}@fido.test", "ghost"]
    facts = await enrich(directory, users=users)
    assert connection is not None and directory._ldap._conn is connection
    assert facts[f"user:{org.alice}"]["manager_name"] == "Mary Boss"
    assert facts[f"user:{org.boss}"]["dn"] == org.boss_dn
    assert facts[f"user:{org.alice}@fido.test"]["dn"] == org.alice_dn
    assert facts["user:ghost"] == {"found": False}
    assert len(facts) == 5  # observables are distinct
