"""Contain a user by disabling their Active Directory account; undo re-enables it.

Only the ACCOUNTDISABLE bit of ``userAccountControl`` is touched (read, set the bit, write),
so every other flag on the account survives. Undo clears the bit only if Fido set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.directory.ad import ACCOUNTDISABLE, ActiveDirectory
from pipeline.errors import IntegrationError, NotFoundError, ResponderError
from pipeline.observables import Kind
from pipeline.plugins import (
    Context,
    Impact,
    NoOptions,
    ResponderResult,
    person_details,
    responders,
)


@responders.register("ad_disable_account")
class ADDisableAccount:
    name = "ad_disable_account"
    target_kind: Kind = "user"
    label = "disable"
    reversible = True
    # high: the person is locked out of every system that trusts the domain at once
    impact = Impact.high
    Options = NoOptions  # the directory comes from the FIDO_AD_* settings

    def __init__(self, directory: ActiveDirectory) -> None:
        self.directory = directory

    @classmethod
    def build(cls, options: NoOptions, context: Context) -> ADDisableAccount:
        return cls(context.directory())

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        return f"Disable {target}{person_details(facts)} in Active Directory"

    async def execute(self, target: str) -> ResponderResult:
        try:
            user = await self.directory.get_user(target)
            dn = user["dn"]
            account = user.get("sAMAccountName", target)
            previous = await self.directory.get_user_account_control(dn)
            if not previous & ACCOUNTDISABLE:
                await self.directory.set_user_account_control(dn, previous | ACCOUNTDISABLE)
        except NotFoundError as exc:
            raise ResponderError(
                f"Cannot disable {target}: no such account in Active Directory"
            ) from exc
        except IntegrationError as exc:
            raise ResponderError(f"Could not disable {target}: {exc}") from exc
        changed = not previous & ACCOUNTDISABLE
        summary = (
            f"Disabled account {account} ({dn})"
            if changed
            else f"Account {account} ({dn}) was already disabled; nothing changed"
        )
        return ResponderResult(
            summary=summary, undo_data={"dn": dn, "previous_uac": previous, "changed": changed}
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        try:
            dn = str(undo_data["dn"])
            previous = int(undo_data["previous_uac"])
            changed = bool(undo_data["changed"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ResponderError(f"Cannot undo disabling {target}: incomplete undo data") from exc
        if not changed or previous & ACCOUNTDISABLE:
            return ResponderResult(
                summary=f"Left {target} ({dn}) disabled: it was disabled before Fido acted"
            )
        try:
            current = await self.directory.get_user_account_control(dn)
            if current & ACCOUNTDISABLE:
                await self.directory.set_user_account_control(dn, current & ~ACCOUNTDISABLE)
        except NotFoundError as exc:
            raise ResponderError(
                f"Cannot re-enable {target}: {dn} is no longer in Active Directory "
                "(moved or deleted?)"
            ) from exc
        except IntegrationError as exc:
            raise ResponderError(f"Could not re-enable {target}: {exc}") from exc
        if not current & ACCOUNTDISABLE:
            return ResponderResult(summary=f"Account {target} ({dn}) was already enabled")
        return ResponderResult(summary=f"Re-enabled account {target} ({dn})")
