"""ad_force_password_change against the session's real Samba AD DC (tests/fixtures/samba.py).

What the DC does, observed here: with ``pwdLastSet = 0`` a simple bind with the right
password fails with result 49 and "data 773" (ERROR_PASSWORD_MUST_CHANGE) in the message,
a wrong password still gets "data 52e", and ``msDS-User-Account-Control-Computed`` has
UF_PASSWORD_EXPIRED; ``pwdLastSet`` accepts only 0 and -1 (-1 stores the current time).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from integrations.directory import ActiveDirectory
from integrations.directory.values import sid_text, to_filetime
from integrations.responders.ad_force_password_change import ADForcePasswordChange
from pipeline.errors import ResponderError
from pipeline.plugins import Context, Impact, Responder, responders
from tests.fixtures.samba import SambaAD
from tests.fixtures.servers import free_port, require_binary
from tests.integrations.directory.helpers import DONT_EXPIRE_PASSWORD, NORMAL, PASSWORD, unique

pytestmark = pytest.mark.samba

UF_PASSWORD_EXPIRED = 0x800000  # msDS-User-Account-Control-Computed
SMARTCARD_REQUIRED = 0x40000
HOSTILE = ["*", ")(", "\\", "\x00", "a\x00b", "*)(|(objectClass=*", "a*)(cn=*", "FIDO\\*", "*@*"]


# Rights as docs/responders/ad.md gives them: read/write one attribute on one class of
# objects under an OU (SDDL object ACEs, inherited by the objects below).
PWD_LAST_SET, USER_CLASS = (
    "bf967a0a-0de6-11d0-a285-00aa003049e2",
    "bf967aba-0de6-11d0-a285-00aa003049e2",
)


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


def responder(directory: ActiveDirectory) -> ADForcePasswordChange:
    return ADForcePasswordChange(ADForcePasswordChange.Options(), directory=directory)


def pwd_last_set(samba_ad: SambaAD, dn: str) -> int:
    return int(samba_ad.read(dn, "pwdLastSet")["pwdLastSet"][0])


def must_change(samba_ad: SambaAD, dn: str) -> bool:
    """The DC's own answer: the password is expired / must be changed."""
    computed = samba_ad.read(dn, "msDS-User-Account-Control-Computed")
    return bool(int(computed["msDS-User-Account-Control-Computed"][0]) & UF_PASSWORD_EXPIRED)


def bind(samba_ad: SambaAD, name: str, password: str = PASSWORD) -> dict[str, Any]:
    return samba_ad.bind_as(f"{name}@fido.test", password)


def refused_773(result: dict[str, Any]) -> bool:
    return result["result"] == 49 and "data 773," in result["message"]


def forced_users(samba_ad: SambaAD) -> list[str]:
    samba_ad.admin.search(samba_ad.base_dn, "(&(objectCategory=person)(pwdLastSet=0))")
    return sorted(e["dn"] for e in samba_ad.admin.response if e["type"] == "searchResEntry")


def test_registered_with_its_options_and_plan() -> None:
    assert responders.get("ad_force_password_change") is ADForcePasswordChange
    cls = ADForcePasswordChange
    assert (cls.target_kind, cls.label) == ("user", "force a password change for")
    assert cls.reversible is True and cls.impact is Impact.low
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls.Options.model_validate({"group": "x"})
    shared = object()  # build takes the context's one directory client
    built = cls.build(cls.Options(), Context(directory=shared))
    assert isinstance(built, Responder) and built.directory is shared
    facts = {"display_name": "John Doe", "department": "Engineering", "found": True}
    assert built.plan("FIDO\\jdoe", facts) == (
        "Force FIDO\\jdoe (John Doe, Engineering) to change their password at next sign-in: "
        "their current password stops signing them in until they choose a new one"
    )
    assert built.plan("jdoe").startswith("Force jdoe to change their password")


async def test_forces_a_change_and_undo_lets_the_old_password_in_again(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("pw")
    dn = samba_ad.create_user(name, PASSWORD)
    before = pwd_last_set(samba_ad, dn)
    assert bind(samba_ad, name)["result"] == 0 and not must_change(samba_ad, dn)

    done = await responder(directory).execute(name)
    assert done.summary == (
        f"{name} ({dn}) must change their password at next sign-in: the current one no longer "
        "signs them in. Sessions already open are not ended"
    )
    assert done.undo_data == {"dn": dn, "previous_pwd_last_set": before, "changed": True}
    assert pwd_last_set(samba_ad, dn) == 0 and must_change(samba_ad, dn)
    refused = bind(samba_ad, name)
    assert refused["result"] == 49 and refused["description"] == "invalidCredentials"
    assert "AcceptSecurityContext error, data 773," in refused["message"]
    assert "data 52e," in bind(samba_ad, name, "Wrong-Pw-42!")["message"]  # still just wrong

    undo_started = to_filetime(datetime.now(UTC)) - 10**7  # a second's slack
    undone = await responder(directory).undo(name, done.undo_data)
    assert undone.summary == (
        f"{name} ({dn}) no longer has to change their password: their current password signs "
        "them in again (its age now counts from this undo)"
    )
    assert bind(samba_ad, name)["result"] == 0 and not must_change(samba_ad, dn)
    assert pwd_last_set(samba_ad, dn) >= max(before, undo_started)  # -1: the DC wrote "now"


async def test_second_execute_changes_nothing_and_the_first_undo_still_works(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("pw2")
    dn = samba_ad.create_user(name, PASSWORD)
    first = await responder(directory).execute(f"FIDO\\{name}")
    second = await responder(directory).execute(f"{name}@fido.test")
    assert second.summary == (
        f"{name} ({dn}) already had to change their password at next sign-in; nothing changed"
    )
    assert second.undo_data == {"dn": dn, "previous_pwd_last_set": 0, "changed": False}
    left = await responder(directory).undo(name, second.undo_data)
    assert "already had to change their password before Fido acted" in left.summary
    assert refused_773(bind(samba_ad, name))
    await responder(directory).undo(name, first.undo_data)
    assert bind(samba_ad, name)["result"] == 0


async def test_forced_before_fido_stays_forced_after_undo(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("pw3")
    dn = samba_ad.create_user(name, PASSWORD)
    samba_ad.set_attribute(dn, "pwdLastSet", "0")
    done = await responder(directory).execute(name)
    assert done.undo_data["changed"] is False and "nothing changed" in done.summary
    undone = await responder(directory).undo(name, done.undo_data)
    assert undone.summary == (
        f"Left {name} ({dn}) as it was: they already had to change their password before Fido acted"
    )
    assert pwd_last_set(samba_ad, dn) == 0 and refused_773(bind(samba_ad, name))


async def test_undo_after_a_new_password_changes_nothing(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("pw4")
    dn = samba_ad.create_user(name, PASSWORD)
    done = await responder(directory).execute(name)
    new_password = '"New-User-Pw2!"'.encode("utf-16-le")
    samba_ad.set_attribute(dn, "unicodePwd", new_password)  # an administrator's reset
    changed_at = pwd_last_set(samba_ad, dn)
    assert changed_at > 0 and bind(samba_ad, name, "New-User-Pw2!")["result"] == 0
    undone = await responder(directory).undo(name, done.undo_data)
    assert "no longer has to change their password (they have chosen a new one" in undone.summary
    assert "nothing to undo" in undone.summary
    assert pwd_last_set(samba_ad, dn) == changed_at


@pytest.mark.parametrize(
    ("flag", "why"),
    [
        (DONT_EXPIRE_PASSWORD, "their password never expires"),
        (SMARTCARD_REQUIRED, "they must sign in with a smart card"),
    ],
)
async def test_accounts_the_dc_would_not_force_are_refused(
    samba_ad: SambaAD, directory: ActiveDirectory, flag: int, why: str
) -> None:
    """Observed first: the DC ignores pwdLastSet = 0 on these accounts (no 773, not
    expired); so Fido refuses and writes nothing, rather than report a change."""
    name = unique("nx")
    dn = samba_ad.create_user(name, PASSWORD)
    samba_ad.set_user_account_control(dn, NORMAL | flag)
    before = pwd_last_set(samba_ad, dn)
    with pytest.raises(ResponderError) as caught:
        await responder(directory).execute(name)
    assert str(caught.value) == (
        f"Cannot force {name} ({dn}) to change their password: {why}, so Active Directory "
        "would ignore it; nothing changed"
    )
    assert pwd_last_set(samba_ad, dn) == before

    samba_ad.set_attribute(dn, "pwdLastSet", "0")  # what the DC makes of it anyway
    assert not must_change(samba_ad, dn)
    assert not refused_773(bind(samba_ad, name))


@pytest.mark.parametrize("target", ["ghost-pw", *HOSTILE])
async def test_unknown_or_hostile_targets_change_nobody(
    samba_ad: SambaAD, directory: ActiveDirectory, target: str
) -> None:
    samba_ad.create_user(unique("decoy"), PASSWORD)  # what a wildcard would find
    before = forced_users(samba_ad)
    with pytest.raises(ResponderError) as caught:
        await responder(directory).execute(target)
    assert str(caught.value) == (
        f"Cannot force a password change for {target}: no such account in Active Directory"
    )
    assert forced_users(samba_ad) == before


async def test_a_name_with_filter_characters_matches_only_itself(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("p(x)")
    other = samba_ad.create_user(unique("p"), PASSWORD, cn=f"Odd*(x)\\y, z+= {name}")
    samba_ad.create_user(name, PASSWORD, cn=f"Odd*(x)\\y, z+= {name}-me")
    dn = samba_ad.dn_of(name)  # as the DC spells it ("=" comes back as "\3D")
    done = await responder(directory).execute(name)
    assert done.undo_data["dn"] == dn and pwd_last_set(samba_ad, dn) == 0
    assert pwd_last_set(samba_ad, other) != 0
    await responder(directory).undo(name, done.undo_data)
    assert bind(samba_ad, name)["result"] == 0


async def test_the_one_right_it_needs_and_nothing_without_it(samba_ad: SambaAD) -> None:
    """A service account with read/write of pwdLastSet on the users of one OU, and no other
    right: inside the OU Fido forces a change and undoes it; outside, the DC refuses."""
    ou_name, inside, outside = unique("Staff"), unique("in"), unique("out")
    ou = samba_ad.create_ou(ou_name)
    service = samba_ad.create_user(unique("svc"), PASSWORD)
    delegate(samba_ad, ou, service, PWD_LAST_SET, USER_CLASS)
    samba_ad.create_user(inside, PASSWORD, ou=ou_name)
    outside_dn = samba_ad.create_user(outside, PASSWORD)
    before = pwd_last_set(samba_ad, outside_dn)
    config = samba_ad.config(bind_dn=service, password=SecretStr(PASSWORD))
    async with ActiveDirectory(config) as delegated:
        done = await responder(delegated).execute(inside)
        assert refused_773(bind(samba_ad, inside))
        await responder(delegated).undo(inside, done.undo_data)
        assert bind(samba_ad, inside)["result"] == 0

        with pytest.raises(ResponderError) as caught:
            await responder(delegated).execute(outside)
    message = str(caught.value)
    assert message.startswith(f"Could not force a password change for {outside}: ")
    assert "insufficientAccessRights" in message and "no write property access" in message
    assert PASSWORD not in message
    assert pwd_last_set(samba_ad, outside_dn) == before


async def test_an_unreachable_directory_fails_quickly(samba_ad: SambaAD) -> None:
    config = samba_ad.config(url=f"ldap://127.0.0.1:{free_port()}", timeout=2.0)
    async with ActiveDirectory(config) as down:
        started = time.monotonic()
        with pytest.raises(ResponderError, match="Could not force a password change for x: "):
            await responder(down).execute("x")
        undo_data = {"dn": "CN=x,CN=Users,DC=fido,DC=test", "previous_pwd_last_set": 1}
        with pytest.raises(ResponderError, match="cannot connect"):
            await responder(down).undo("x", undo_data | {"changed": True})
        assert time.monotonic() - started < 5


async def test_undo_needs_its_data_and_the_account(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    with pytest.raises(ResponderError, match="incomplete undo data"):
        await responder(directory).undo("x", {"dn": "CN=x,DC=fido,DC=test"})
    name = unique("gone")
    dn = samba_ad.create_user(name, PASSWORD)
    done = await responder(directory).execute(name)
    assert samba_ad.admin.delete(dn)
    with pytest.raises(ResponderError, match=r"is no longer in Active Directory \(moved"):
        await responder(directory).undo(name, done.undo_data)
