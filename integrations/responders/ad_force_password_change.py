"""Make a user choose a new password at their next sign-in; undo lifts that again.

Active Directory keeps "must change password at next logon" as ``pwdLastSet = 0`` and
accepts only two values there: 0, and -1, which makes the DC store the current time. So
the flag is set by writing 0 and cleared by writing -1; the earlier time cannot be written
back, and after Undo the password's age counts from the Undo (it expires that much later).
Undo writes -1 only if Fido wrote the 0 (it was not 0 already) and it is still 0: a user
who has chosen a new password since has nothing to undo.

The DC ignores ``pwdLastSet = 0`` for accounts whose password never expires and for
accounts that must sign in with a smart card (``userAccountControl`` DONT_EXPIRE_PASSWORD,
SMARTCARD_REQUIRED); those are refused rather than reported as changed.

Not containment against whoever knows the password: changing it needs only the current one.
It is for a password that may have been exposed while its owner still signs in
(``docs/responders/ad.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.directory.ad import (
    DONT_EXPIRE_PASSWORD,
    MUST_CHANGE_PASSWORD,
    PASSWORD_SET_NOW,
    SMARTCARD_REQUIRED,
    ActiveDirectory,
)
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

_IGNORED_BY = {
    DONT_EXPIRE_PASSWORD: "their password never expires",
    SMARTCARD_REQUIRED: "they must sign in with a smart card",
}


@responders.register("ad_force_password_change")
class ADForcePasswordChange:
    """Set "must change password at next logon" on a user's Active Directory account."""

    name = "ad_force_password_change"
    target_kind: Kind = "user"
    label = "force a password change for"
    reversible = True
    # low: the user is interrupted, not locked out (they choose a new password and carry on),
    # nothing is lost, and Undo lifts it
    impact = Impact.low
    Options = NoOptions  # the directory comes from the FIDO_AD_* settings

    def __init__(self, options: NoOptions, *, directory: ActiveDirectory) -> None:
        self.options = options
        self.directory = directory

    @classmethod
    def build(cls, options: NoOptions, context: Context) -> ADForcePasswordChange:
        """The responder on the process's shared directory client."""
        return cls(options, directory=context.directory())

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        return (
            f"Force {target}{person_details(facts)} to change their password at next sign-in: "
            "their current password stops signing them in until they choose a new one"
        )

    async def execute(self, target: str) -> ResponderResult:
        try:
            user = await self.directory.get_user(target)
            dn = user["dn"]
            account = user.get("sAMAccountName", target)
            ignored = [
                why for flag, why in _IGNORED_BY.items() if user["userAccountControl"] & flag
            ]
            if ignored:
                raise ResponderError(
                    f"Cannot force {account} ({dn}) to change their password: "
                    f"{' and '.join(ignored)}, so Active Directory would ignore it; "
                    "nothing changed"
                )
            previous = await self.directory.get_pwd_last_set(dn)
            if previous != MUST_CHANGE_PASSWORD:
                await self.directory.set_pwd_last_set(dn, MUST_CHANGE_PASSWORD)
        except NotFoundError as exc:
            raise ResponderError(
                f"Cannot force a password change for {target}: no such account in Active Directory"
            ) from exc
        except IntegrationError as exc:
            raise ResponderError(f"Could not force a password change for {target}: {exc}") from exc
        changed = previous != MUST_CHANGE_PASSWORD
        summary = (
            f"{account} ({dn}) must change their password at next sign-in: the current one "
            "no longer signs them in. Sessions already open are not ended"
            if changed
            else f"{account} ({dn}) already had to change their password at next sign-in; "
            "nothing changed"
        )
        return ResponderResult(
            summary=summary,
            undo_data={"dn": dn, "previous_pwd_last_set": previous, "changed": changed},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        try:
            dn = str(undo_data["dn"])
            changed = bool(undo_data["changed"])
            int(undo_data["previous_pwd_last_set"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ResponderError(
                f"Cannot undo the forced password change of {target}: incomplete undo data"
            ) from exc
        if not changed:
            return ResponderResult(
                summary=f"Left {target} ({dn}) as it was: they already had to change their "
                "password before Fido acted"
            )
        try:
            current = await self.directory.get_pwd_last_set(dn)
            if current == MUST_CHANGE_PASSWORD:
                await self.directory.set_pwd_last_set(dn, PASSWORD_SET_NOW)
        except NotFoundError as exc:
            raise ResponderError(
                f"Cannot undo the forced password change of {target}: {dn} is no longer in "
                "Active Directory (moved or deleted?)"
            ) from exc
        except IntegrationError as exc:
            raise ResponderError(
                f"Could not undo the forced password change of {target}: {exc}"
            ) from exc
        if current != MUST_CHANGE_PASSWORD:
            return ResponderResult(
                summary=f"{target} ({dn}) no longer has to change their password (they have "
                "chosen a new one, or someone cleared it); nothing to undo"
            )
        return ResponderResult(
            summary=f"{target} ({dn}) no longer has to change their password: their current "
            "password signs them in again (its age now counts from this undo)"
        )
