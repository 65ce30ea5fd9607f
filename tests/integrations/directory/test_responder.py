"""The disable-account responder against a real Samba AD DC: logon blocked, then restored."""

from __future__ import annotations

import pytest

from integrations.directory import ActiveDirectory
from integrations.enrichers.active_directory import ActiveDirectoryEnricher
from integrations.responders.ad_disable_account import ADDisableAccount
from pipeline.errors import ResponderError
from pipeline.plugins import Enricher, Responder, enrichers, responders
from tests.fixtures.samba import SambaAD
from tests.integrations.directory.helpers import (
    DISABLED,
    DONT_EXPIRE_PASSWORD,
    NORMAL,
    PASSWORD,
    unique,
)

pytestmark = pytest.mark.samba


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
