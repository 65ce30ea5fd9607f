"""The AD client, enricher and disable-account responder against a real Samba AD DC."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr, ValidationError

from integrations.directory import ActiveDirectory, ADConfig
from integrations.enrichers.active_directory import ActiveDirectoryEnricher
from integrations.responders.ad_disable_account import ADDisableAccount
from pipeline.errors import IntegrationError, NotFoundError, ResponderError
from pipeline.observables import Observables
from pipeline.plugins import Enricher, Responder, enrichers, responders
from tests.fixtures.samba import SambaAD
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.samba

PASSWORD = "Fido-User-Pw1!"
NORMAL, DISABLED, DONT_EXPIRE_PASSWORD = 0x200, 0x202, 0x10000


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"  # sAMAccountName holds at most 20 characters


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


@pytest.fixture(scope="module")
def org(samba_ad: SambaAD) -> Org:
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
    return Org(boss, boss_dn, alice, alice_dn, alice_mail, plain, plain_dn, groups)


@pytest.fixture
async def directory(samba_ad: SambaAD) -> AsyncIterator[ActiveDirectory]:
    async with ActiveDirectory(samba_ad.config()) as ad:
        yield ad


async def facts_for(directory: ActiveDirectory, *users: str) -> dict[str, dict[str, object]]:
    return await ActiveDirectoryEnricher(directory).enrich(Observables(users=list(users)))


# --- enricher -------------------------------------------------------------------------


async def test_enrich_reports_who_the_user_is(org: Org, directory: ActiveDirectory) -> None:
    facts = await facts_for(directory, org.alice)
    assert facts == {
        f"user:{org.alice}": {
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
            "disabled": False,
            "privileged": False,
        }
    }


async def test_missing_attributes_are_absent(
    samba_ad: SambaAD, org: Org, directory: ActiveDirectory
) -> None:
    report = unique("rep")
    dn = samba_ad.create_user(report, PASSWORD, manager=org.plain)  # a manager with no name
    facts = await facts_for(directory, org.plain, report)
    assert facts[f"user:{org.plain}"] == {
        "found": True,
        "dn": org.plain_dn,
        "account": org.plain,
        "groups": [],
        "disabled": False,
        "privileged": False,
    }
    assert facts[f"user:{report}"] == {
        "found": True,
        "dn": dn,
        "account": report,
        "manager": org.plain_dn,
        "groups": [],
        "disabled": False,
        "privileged": False,
    }


@pytest.mark.parametrize("group", ["Domain Admins", "Backup Operators", "Account Operators"])
async def test_members_of_admin_groups_are_privileged(
    samba_ad: SambaAD, directory: ActiveDirectory, group: str
) -> None:
    name = unique("adm")
    samba_ad.create_user(name, PASSWORD, groups=[group])
    facts = (await facts_for(directory, name))[f"user:{name}"]
    assert facts["groups"] == [group]
    assert facts["privileged"] is True


async def test_disabled_account_is_reported(samba_ad: SambaAD, directory: ActiveDirectory) -> None:
    name = unique("off")
    samba_ad.set_user_account_control(samba_ad.create_user(name, PASSWORD), DISABLED)
    assert (await facts_for(directory, name))[f"user:{name}"]["disabled"] is True


async def test_unknown_user_is_not_found(directory: ActiveDirectory) -> None:
    assert await facts_for(directory, "nosuchuser") == {"user:nosuchuser": {"found": False}}


async def test_domain_upn_and_mail_forms_find_the_same_user(
    org: Org, directory: ActiveDirectory
) -> None:
    forms = [f"FIDO\\{org.alice}", f"{org.alice}@fido.test", org.alice_mail, org.alice, org.boss]
    facts = await facts_for(directory, *forms)
    assert [facts[f"user:{form}"]["dn"] for form in forms] == [org.alice_dn] * 4 + [org.boss_dn]


@pytest.mark.parametrize(
    "account", ["*", "a*)(cn=*", "*)(|(sAMAccountName=*", "adm*", "*@fido.test", "FIDO\\*"]
)
async def test_filter_values_are_escaped(
    org: Org, directory: ActiveDirectory, account: str
) -> None:
    assert await directory.find_user(account) is None
    assert await facts_for(directory, account) == {f"user:{account}": {"found": False}}


async def test_special_characters_match_literally(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("p(x)")
    dn = samba_ad.create_user(name, PASSWORD)
    user = await directory.find_user(name)
    assert user is not None and user["dn"] == dn


# --- directory client -------------------------------------------------------------------


async def test_find_user_returns_plain_values(org: Org, directory: ActiveDirectory) -> None:
    user = await directory.find_user(org.alice)
    assert user is not None
    assert user["userAccountControl"] == NORMAL
    assert user["manager"] == org.boss_dn
    assert sorted(user["memberOf"]) == sorted(
        f"CN={group},CN=Users,DC=fido,DC=test" for group in org.groups
    )
    with pytest.raises(NotFoundError, match="nosuchuser"):
        await directory.get_user("nosuchuser")


async def test_missing_entry_is_not_found(directory: ActiveDirectory) -> None:
    with pytest.raises(NotFoundError):
        await directory.get_user_account_control("CN=nobody,CN=Users,DC=fido,DC=test")


async def test_wrong_password_is_an_integration_error(samba_ad: SambaAD) -> None:
    config = samba_ad.config(password=SecretStr("Not-The-Pw-42"))
    assert "Not-The-Pw-42" not in repr(config)
    async with ActiveDirectory(config) as ad:
        assert "Not-The-Pw-42" not in repr(ad)
        with pytest.raises(IntegrationError, match="invalidCredentials") as caught:
            await ad.find_user("anyone")
        with pytest.raises(IntegrationError):
            await ActiveDirectoryEnricher(ad).enrich(Observables(users=["anyone"]))
    assert "Not-The-Pw-42" not in str(caught.value)
    assert samba_ad.admin_dn in str(caught.value)


async def test_unreachable_server_is_an_integration_error(samba_ad: SambaAD) -> None:
    config = samba_ad.config(url=f"ldap://127.0.0.1:{free_port()}", timeout=2.0)
    async with ActiveDirectory(config) as ad:
        with pytest.raises(IntegrationError, match="cannot connect"):
            await ad.find_user("anyone")


async def test_reconnects_when_the_connection_drops(org: Org, directory: ActiveDirectory) -> None:
    assert await directory.find_user(org.alice) is not None
    first = directory._conn  # white-box: cut the shared connection under the client
    assert first is not None
    first.socket.shutdown(socket.SHUT_RDWR)
    assert await directory.find_user(org.alice) is not None
    assert directory._conn is not first


@pytest.mark.parametrize("tls", ["start_tls", "ldaps"])
async def test_tls_connections(samba_ad: SambaAD, org: Org, tls: str) -> None:
    changes: dict[str, object] = (
        {"start_tls": True} if tls == "start_tls" else {"url": samba_ad.ldaps_url}
    )
    async with ActiveDirectory(samba_ad.config(verify_tls=False, **changes)) as ad:
        assert await ad.find_user(org.alice) is not None
    async with ActiveDirectory(samba_ad.config(**changes)) as ad:  # self-signed: not trusted
        with pytest.raises(IntegrationError, match="cannot connect"):
            await ad.find_user(org.alice)


def test_config_rejects_bad_urls() -> None:
    base = {"bind_dn": "CN=x", "password": "secret", "base_dn": "DC=x"}
    with pytest.raises(ValidationError):
        ADConfig(url="http://dc.example.com", **base)
    with pytest.raises(ValidationError):
        ADConfig(url="ldaps://dc.example.com", start_tls=True, **base)
    assert "secret" not in repr(ADConfig(url="ldap://dc", **base))


# --- responder ------------------------------------------------------------------------


def test_plugins_are_registered() -> None:
    assert enrichers.get("active_directory") is ActiveDirectoryEnricher
    assert responders.get("ad_disable_account") is ADDisableAccount
    assert ADDisableAccount.target_kind == "user" and ADDisableAccount.label == "disable"


async def test_disable_blocks_logon_and_undo_restores_it(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("vic")
    dn = samba_ad.create_user(name, PASSWORD)
    upn = f"{name}@fido.test"
    assert samba_ad.bind_as(upn, PASSWORD)["result"] == 0
    responder = ADDisableAccount(directory)
    assert isinstance(responder, Responder)
    assert isinstance(ActiveDirectoryEnricher(directory), Enricher)

    done = await responder.execute(name)
    assert done.summary == f"Disabled account {name} ({dn})"
    assert done.undo_data == {"dn": dn, "previous_uac": NORMAL, "changed": True}
    refused = samba_ad.bind_as(upn, PASSWORD)
    assert refused["result"] == 49 and "data 533" in refused["message"]

    undone = await responder.undo(name, done.undo_data)
    assert undone.summary == f"Re-enabled account {name} ({dn})"
    assert samba_ad.bind_as(upn, PASSWORD)["result"] == 0
    assert samba_ad.get_user_account_control(dn) == NORMAL


async def test_other_account_flags_survive(samba_ad: SambaAD, directory: ActiveDirectory) -> None:
    name = unique("flag")
    dn = samba_ad.create_user(name, PASSWORD)
    samba_ad.set_user_account_control(dn, NORMAL | DONT_EXPIRE_PASSWORD)
    responder = ADDisableAccount(directory)
    done = await responder.execute(f"FIDO\\{name}")
    assert samba_ad.get_user_account_control(dn) == DISABLED | DONT_EXPIRE_PASSWORD
    await responder.undo(name, done.undo_data)
    assert samba_ad.get_user_account_control(dn) == NORMAL | DONT_EXPIRE_PASSWORD


async def test_already_disabled_account_is_left_alone(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("was")
    dn = samba_ad.create_user(name, PASSWORD)
    samba_ad.set_user_account_control(dn, DISABLED)
    responder = ADDisableAccount(directory)
    done = await responder.execute(name)
    assert done.undo_data == {"dn": dn, "previous_uac": DISABLED, "changed": False}
    assert "already disabled" in done.summary
    undone = await responder.undo(name, done.undo_data)
    assert "disabled before Fido acted" in undone.summary
    assert samba_ad.get_user_account_control(dn) == DISABLED
    assert "data 533" in samba_ad.bind_as(f"{name}@fido.test", PASSWORD)["message"]


async def test_undo_after_someone_re_enabled_it(
    samba_ad: SambaAD, directory: ActiveDirectory
) -> None:
    name = unique("back")
    dn = samba_ad.create_user(name, PASSWORD)
    responder = ADDisableAccount(directory)
    done = await responder.execute(name)
    samba_ad.set_user_account_control(dn, NORMAL)
    undone = await responder.undo(name, done.undo_data)
    assert undone.summary == f"Account {name} ({dn}) was already enabled"
    assert samba_ad.get_user_account_control(dn) == NORMAL


async def test_unknown_user_cannot_be_disabled(directory: ActiveDirectory) -> None:
    with pytest.raises(ResponderError, match="Cannot disable ghost: no such account"):
        await ADDisableAccount(directory).execute("ghost")
    with pytest.raises(ResponderError, match="incomplete undo data"):
        await ADDisableAccount(directory).undo("ghost", {})
