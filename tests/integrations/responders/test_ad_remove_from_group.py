"""ad_remove_from_group against the session's real Samba AD DC (tests/fixtures/samba.py).

Membership is read back from the DC both ways: the group's ``member`` and the user's
``memberOf``. Every test makes its own users and groups.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from ldap3.utils.dn import escape_rdn  # imported already (and quietly) by the fixture
from pydantic import SecretStr, ValidationError

from integrations.directory import ActiveDirectory
from integrations.directory.values import sid_text
from integrations.responders.ad_remove_from_group import ADRemoveFromGroup
from pipeline.errors import ResponderError
from pipeline.plugins import Context, Impact, Responder, responders
from tests.fixtures.samba import SambaAD
from tests.fixtures.servers import free_port, require_binary
from tests.integrations.directory.helpers import PASSWORD, unique

pytestmark = pytest.mark.samba

HOSTILE = ["*", ")(", "\\", "\x00", "a\x00b", "*)(|(objectClass=*", "a*)(cn=*", "FIDO\\*", "*@*"]
ODD = "Odd*(x)\\y, z+="  # filter and DN special characters in a CN


# Rights as docs/responders/ad.md gives them: read/write one attribute on one class of
# objects under an OU (SDDL object ACEs, inherited by the objects below).
MEMBER, GROUP_CLASS = "bf9679c0-0de6-11d0-a285-00aa003049e2", "bf967a9c-0de6-11d0-a285-00aa003049e2"


def delegate(samba_ad: SambaAD, ou: str, trustee_dn: str, attribute: str, of_class: str) -> None:
    """Give ``trustee_dn`` read/write of ``attribute`` on objects of ``of_class`` in ``ou``."""
    raw = samba_ad.read(trustee_dn, "objectSid")["objectSid"][0]
    sid = sid_text(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
    command = [
        require_binary("samba-tool"), "dsacl", "set", "-H", f"ldap://{samba_ad.address}",
        "-s", str(samba_ad.root / "etc" / "smb.conf"), f"--simple-bind-dn={samba_ad.admin_dn}",
        f"--password={samba_ad.admin_password}", f"--objectdn={ou}",
        f"--sddl=(OA;CI;RPWP;{attribute};{of_class};{sid})",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
async def directory(samba_ad: SambaAD) -> AsyncIterator[ActiveDirectory]:
    async with ActiveDirectory(samba_ad.config()) as ad:
        yield ad


def responder(directory: ActiveDirectory, group: str, **options: Any) -> ADRemoveFromGroup:
    parsed = ADRemoveFromGroup.Options.model_validate({"group": group, **options})
    return ADRemoveFromGroup(parsed, directory=directory)


def members(samba_ad: SambaAD, group: str) -> list[str]:
    return sorted(samba_ad.read(samba_ad.dn_of(group), "member").get("member", []))


def member_of(samba_ad: SambaAD, user: str) -> list[str]:
    return sorted(samba_ad.read(samba_ad.dn_of(user), "memberOf").get("memberOf", []))


def user_in(samba_ad: SambaAD, *groups: str, cn: str | None = None) -> tuple[str, str]:
    """A new user in ``groups``: its name and its DN as the DC spells it."""
    name = unique("u")
    samba_ad.create_user(name, PASSWORD, groups=groups, cn=cn)
    return name, samba_ad.dn_of(name)


def test_registered_with_its_options_and_plan() -> None:
    assert responders.get("ad_remove_from_group") is ADRemoveFromGroup
    cls = ADRemoveFromGroup
    assert (cls.target_kind, cls.label, cls.reversible) == ("user", "remove from group", True)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls.Options.model_validate({"group": "VPN", "groups": "x"})
    with pytest.raises(ValidationError, match="Field required"):
        cls.Options.model_validate({})
    shared = object()  # build takes the context's one directory client
    built = cls.build(cls.Options(group="VPN Users"), Context(directory=shared))
    assert isinstance(built, Responder) and built.directory is shared
    assert built.impact is Impact.low
    facts = {"display_name": "John Doe", "department": "Engineering"}
    assert built.plan("FIDO\\jdoe", facts) == (
        "Remove FIDO\\jdoe (John Doe, Engineering) from the Active Directory group VPN Users"
    )
    admins = cls.build(cls.Options(group="domain admins"), Context(directory=shared))
    assert admins.plan("jdoe") == (
        "Fido will refuse to remove jdoe from domain admins: an administrator group"
    )
    allowed = cls.Options(group="Domain Admins", allow_protected_groups=True)
    assert cls(allowed, directory=shared).impact is Impact.high  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("group", "why"),
    [
        ("", "must name a group"),
        ("  ", "must name a group"),
        ("VPN\x00Users", "control characters"),
        ("VPN\nUsers", "control characters"),
        ("*", "not a sAMAccountName"),
        ("Domain*", "not a sAMAccountName"),
        ("a,b", "not a sAMAccountName"),
        ("a+b", "not a sAMAccountName"),
        ("FIDO\\VPN", "not a sAMAccountName"),
        ("x)(cn=*", "not a valid DN"),
        ("CN=Ops, EU,DC=fido,DC=test", "not a valid DN"),
        ("=x", "not a valid DN"),
    ],
)
def test_options_refuse_what_cannot_name_a_group(group: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        ADRemoveFromGroup.Options(group=group)


async def test_removes_the_member_and_undo_puts_it_back(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    group, other_group = unique("vpn "), unique("keep ")
    samba_ad.create_group(group)
    samba_ad.create_group(other_group)
    name, dn = user_in(samba_ad, group, other_group)
    colleague, colleague_dn = user_in(samba_ad, group)
    group_before, memberships_before = members(samba_ad, group), member_of(samba_ad, name)
    assert group_before == sorted([dn, colleague_dn])

    done = await responder(directory, group).execute(name)
    gdn = samba_ad.dn_of(group)
    assert done.summary == (
        f"Removed {name} ({dn}) from the group {group} ({gdn}). Sessions already open keep "
        "the group's access until the user signs in again"
    )
    assert done.undo_data == {"group_dn": gdn, "user_dn": dn, "group": group, "changed": True}
    assert members(samba_ad, group) == [colleague_dn]
    assert member_of(samba_ad, name) == [samba_ad.dn_of(other_group)]

    undone = await responder(directory, group).undo(name, done.undo_data)
    assert undone.summary == f"Added {name} ({dn}) back to the group {group} ({gdn})"
    assert members(samba_ad, group) == group_before
    assert member_of(samba_ad, name) == memberships_before


async def test_second_execute_and_a_non_member_change_nothing(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    group = unique("twice ")
    samba_ad.create_group(group)
    name, dn = user_in(samba_ad, group)
    outsider, _ = user_in(samba_ad)
    first = await responder(directory, group).execute(f"FIDO\\{name}")
    second = await responder(directory, group).execute(f"{name}@fido.test")
    assert second.summary == f"{name} is not a member of {group}; nothing changed"
    assert second.undo_data["changed"] is False
    left = await responder(directory, group).undo(name, second.undo_data)
    assert left.summary == f"{name} was not in {group} before Fido acted; nothing to undo"
    assert members(samba_ad, group) == []

    never = await responder(directory, group).execute(outsider)
    assert never.summary == f"{outsider} is not a member of {group}; nothing changed"
    await responder(directory, group).undo(outsider, never.undo_data)
    assert members(samba_ad, group) == [] and member_of(samba_ad, outsider) == []

    await responder(directory, group).undo(name, first.undo_data)
    assert members(samba_ad, group) == [dn]
    again = await responder(directory, group).undo(name, first.undo_data)
    assert again.summary == f"{name} ({dn}) is in {group} again already; nothing changed"
    assert members(samba_ad, group) == [dn]


async def test_group_and_user_dns_with_special_characters(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    """Given by DN, a group whose CN holds ``, + = * ( ) \\``; a user whose CN does too,
    beside a user whose CN starts the same: only the one user leaves the group."""
    tag = unique("")
    account = unique("oddg")
    odd_group = f"CN={escape_rdn(f'{ODD} grp {tag}')},CN=Users,{samba_ad.base_dn}"
    assert samba_ad.admin.add(odd_group, ["top", "group"], {"sAMAccountName": account})
    name, dn = user_in(samba_ad, account, cn=f"{ODD} {tag}")
    _, twin = user_in(samba_ad, account, cn=f"{ODD} {tag}-2")
    real_dn = samba_ad.dn_of(account)
    assert "\\," in real_dn and "\\+" in real_dn

    done = await responder(directory, real_dn).execute(name)
    assert done.undo_data["group_dn"] == real_dn and done.undo_data["user_dn"] == dn
    assert members(samba_ad, account) == [twin]
    await responder(directory, real_dn).undo(name, done.undo_data)
    assert members(samba_ad, account) == sorted([dn, twin])

    parens = unique("Ops (EU) ")  # a sAMAccountName may hold parentheses
    samba_ad.create_group(parens)
    paren_user, _ = user_in(samba_ad, parens)
    await responder(directory, parens).execute(paren_user)
    assert members(samba_ad, parens) == []


@pytest.mark.parametrize("target", ["ghost-grp", *HOSTILE])
async def test_unknown_or_hostile_targets_change_no_membership(
    samba_ad: SambaAD, directory: ActiveDirectory, target: str
) -> None:
    group = unique("hostile ")
    samba_ad.create_group(group)
    user_in(samba_ad, group)
    before = members(samba_ad, group)
    with pytest.raises(ResponderError) as caught:
        await responder(directory, group).execute(target)
    assert str(caught.value) == (
        f"Cannot remove {target} from a group: no such account in Active Directory"
    )
    assert members(samba_ad, group) == before


@pytest.mark.parametrize(
    "group",
    [
        *HOSTILE,
        "Domain*",
        "Domain Admins)(",
        "CN=*,CN=Users,DC=fido,DC=test",
        "CN=Domain Admins\\2a,CN=Users,DC=fido,DC=test",
        "CN=Users,DC=fido,DC=test",  # a container, not a group
        "CN=Administrator,CN=Users,DC=fido,DC=test",  # a user
        "DC=fido,DC=test",
        "CN=Domain Admins,CN=Users,DC=other,DC=test",  # outside the base DN
        "CN=Domain Admins,CN=Users,DC=fido,DC=test)(cn=*",
    ],
)
async def test_hostile_group_values_find_no_group(directory: ActiveDirectory, group: str) -> None:
    """The directory layer on its own (below the Options' checks): escaped, never a
    wildcard, never a way out of the base DN."""
    assert await directory.find_group("Domain Admins") is not None
    assert await directory.find_group(group) is None


async def test_a_group_dn_outside_the_base_dn_is_not_found(samba_ad: SambaAD) -> None:
    """With the base DN an OU, a group elsewhere in the domain is not there, by name or DN."""
    ou = samba_ad.create_ou(unique("Scoped"))
    inside = unique("inside ")
    assert samba_ad.admin.add(f"CN={inside},{ou}", ["top", "group"], {"sAMAccountName": inside})
    async with ActiveDirectory(samba_ad.config(base_dn=ou)) as scoped:
        assert (await scoped.get_group(f"CN={inside},{ou}"))["sAMAccountName"] == inside
        assert (await scoped.get_group(inside))["dn"] == f"CN={inside},{ou}"
        assert await scoped.find_group("Domain Users") is None
        assert await scoped.find_group(f"CN=Domain Users,CN=Users,{samba_ad.base_dn}") is None
        assert await scoped.find_group(ou) is None


async def test_unknown_group(samba_ad: SambaAD, directory: ActiveDirectory) -> None:
    name, _ = user_in(samba_ad)
    for group in ("no-such-group", "CN=no such group,CN=Users,DC=fido,DC=test"):
        with pytest.raises(ResponderError) as caught:
            await responder(directory, group).execute(name)
        assert str(caught.value) == (
            f"Cannot remove {name} from {group}: it is not a group in Active Directory"
        )


@pytest.fixture
def admin_member(samba_ad: SambaAD) -> Iterator[tuple[str, str]]:
    """A throw-away user in Domain Admins and Backup Operators, taken out afterwards."""
    name, dn = user_in(samba_ad, "Domain Admins", "Backup Operators")
    yield name, dn
    samba_ad.admin.delete(dn)


@pytest.mark.parametrize(
    "group",
    [
        "Domain Admins",
        "domain admins",
        "Enterprise Admins",
        "Schema Admins",
        "Administrators",
        "CN=Administrators,CN=Builtin,DC=fido,DC=test",
        "Backup Operators",  # adminCount = 1: AdminSDHolder protects it
    ],
)
async def test_protected_groups_are_refused(
    samba_ad: SambaAD, directory: ActiveDirectory, admin_member: tuple[str, str], group: str
) -> None:
    name, _ = admin_member
    before = member_of(samba_ad, name)
    with pytest.raises(ResponderError) as caught:
        await responder(directory, group).execute(name)
    message = str(caught.value)
    assert message.startswith(f"Refused to remove {name} from ")
    assert "(allow_protected_groups is off); nothing changed" in message
    assert member_of(samba_ad, name) == before


async def test_a_look_alike_administrator_group_is_refused_too(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    ou = samba_ad.create_ou(unique("Lab"))
    account = unique("lookalike")
    assert samba_ad.admin.add(
        f"CN=Domain Admins,{ou}", ["top", "group"], {"sAMAccountName": account}
    )
    name, _ = user_in(samba_ad, account)
    with pytest.raises(ResponderError, match="it has the name of an administrator group"):
        await responder(directory, account).execute(name)
    assert len(members(samba_ad, account)) == 1


async def test_allowed_protected_group_and_undo_checks_again(
    samba_ad: SambaAD, directory: ActiveDirectory, admin_member: tuple[str, str]
) -> None:
    name, dn = admin_member
    allowed = responder(directory, "Domain Admins", allow_protected_groups=True)
    assert allowed.impact is Impact.high
    done = await allowed.execute(name)
    assert dn not in members(samba_ad, "Domain Admins")

    with pytest.raises(ResponderError) as caught:  # the policy turned it off since
        await responder(directory, "Domain Admins").undo(name, done.undo_data)
    assert str(caught.value).startswith(f"Refused to add {name} back to Domain Admins: ")
    assert dn not in members(samba_ad, "Domain Admins")

    await allowed.undo(name, done.undo_data)
    assert dn in members(samba_ad, "Domain Admins")


async def test_primary_and_nested_memberships_are_refused(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    outer, inner = unique("outer "), unique("inner ")
    samba_ad.create_group(outer)
    samba_ad.create_group(inner, member_of=[outer])
    name, _ = user_in(samba_ad, inner)
    with pytest.raises(ResponderError) as caught:
        await responder(directory, outer).execute(name)
    assert str(caught.value) == (
        f"Cannot remove {name} from {outer}: they are in it through {inner}, not directly; "
        "Fido removes direct memberships only, so nothing changed"
    )
    assert member_of(samba_ad, name) == [samba_ad.dn_of(inner)]

    with pytest.raises(ResponderError) as caught:
        await responder(directory, "Domain Users").execute(name)
    assert str(caught.value) == (
        f"Cannot remove {name} from Domain Users: it is their primary group, which AD keeps "
        "on the account (primaryGroupID), not in the group; nothing changed"
    )


async def test_the_one_right_it_needs_and_nothing_without_it(samba_ad: SambaAD) -> None:
    """A service account with read/write of member on the groups of one OU, and no other
    right: there Fido removes and adds back; from a group elsewhere, the DC refuses."""
    ou_name, inside, outside = unique("Teams"), unique("team "), unique("elsewhere ")
    ou = samba_ad.create_ou(ou_name)
    service = samba_ad.create_user(unique("svc"), PASSWORD)
    delegate(samba_ad, ou, service, MEMBER, GROUP_CLASS)
    assert samba_ad.admin.add(f"CN={inside},{ou}", ["top", "group"], {"sAMAccountName": inside})
    samba_ad.create_group(outside)
    name, dn = user_in(samba_ad, inside, outside)
    config = samba_ad.config(bind_dn=service, password=SecretStr(PASSWORD))
    async with ActiveDirectory(config) as delegated:
        done = await responder(delegated, inside).execute(name)
        assert members(samba_ad, inside) == []
        await responder(delegated, inside).undo(name, done.undo_data)
        assert members(samba_ad, inside) == [dn]

        with pytest.raises(ResponderError) as caught:
            await responder(delegated, outside).execute(name)
    assert str(caught.value).startswith(f"Could not remove {name} from {outside}: ")
    assert "insufficientAccessRights" in str(caught.value)
    assert members(samba_ad, outside) == [dn]


async def test_an_unreachable_directory_fails_quickly(samba_ad: SambaAD) -> None:
    config = samba_ad.config(url=f"ldap://127.0.0.1:{free_port()}", timeout=2.0)
    undo_data = {"group_dn": "CN=g,DC=fido,DC=test", "user_dn": "CN=u,DC=fido,DC=test"}
    async with ActiveDirectory(config) as down:
        started = time.monotonic()
        with pytest.raises(ResponderError, match="Could not remove x from VPN: .*cannot connect"):
            await responder(down, "VPN").execute("x")
        with pytest.raises(ResponderError, match="cannot connect"):
            await responder(down, "VPN").undo("x", undo_data | {"group": "g", "changed": True})
        assert time.monotonic() - started < 5


async def test_undo_needs_its_data_the_group_and_the_user(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    with pytest.raises(ResponderError, match="incomplete undo data"):
        await responder(directory, "x").undo("x", {"group_dn": "CN=g,DC=fido,DC=test"})
    group = unique("gone ")
    samba_ad.create_group(group)
    name, dn = user_in(samba_ad, group)
    done = await responder(directory, group).execute(name)
    assert samba_ad.admin.delete(dn)
    with pytest.raises(ResponderError, match=f"{re.escape(dn)} is no longer in Active Directory"):
        await responder(directory, group).undo(name, done.undo_data)
    assert samba_ad.admin.delete(samba_ad.dn_of(group))
    with pytest.raises(ResponderError, match="it is no longer in Active Directory"):
        await responder(directory, group).undo(name, done.undo_data)
