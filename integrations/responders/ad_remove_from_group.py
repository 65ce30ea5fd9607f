"""Take a user out of one Active Directory group; undo puts them back.

The group is the policy's ``group`` option: its sAMAccountName or its DN. Fido deletes the
user's DN from the group's ``member`` (one value; the rest of the group is untouched) and
Undo adds it again, only if Fido removed it. A user who is not in the group's ``member``
is left alone; when they are in it through a nested group, or it is their primary group,
Fido refuses and says so, since removing them would need a change elsewhere.

Administrator groups are refused unless ``allow_protected_groups`` is set: taking someone
out of them is for a person to decide, and done by mistake it can lock the administrators
out. Groups are recognised by SID (names are localised and can be renamed), by those names
(a look-alike elsewhere is refused too), and by ``adminCount = 1``, AD's own mark on every
group its AdminSDHolder protects (Account, Server, Print and Backup Operators, Domain
Controllers, Replicator…). Undo checks again before adding anyone back.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations.directory.ad import ActiveDirectory, is_dn
from pipeline.errors import IntegrationError, NotFoundError, ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, Impact, ResponderResult, person_details, responders

# Administrator groups by relative ID (Schema and Enterprise Admins live in the forest root
# domain; their SIDs end in these RIDs whichever domain they are in) and by builtin SID.
PROTECTED_DOMAIN_RIDS = {512: "Domain Admins", 518: "Schema Admins", 519: "Enterprise Admins"}
PROTECTED_BUILTIN_SIDS = {"S-1-5-32-544": "Administrators"}
PROTECTED_NAMES = frozenset(
    name.casefold() for name in (*PROTECTED_DOMAIN_RIDS.values(), *PROTECTED_BUILTIN_SIDS.values())
)
_NOT_IN_ACCOUNT_NAMES = frozenset('"/\\[]:;|=,+*?<>')  # AD refuses these in a sAMAccountName


class Options(BaseModel):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"group": "VPN Users"},
                {"group": "CN=VPN Users,OU=Groups,DC=corp,DC=example"},
            ]
        },
    )

    group: str = Field(max_length=2048)  # sAMAccountName or DN
    allow_protected_groups: bool = False

    @field_validator("group")
    @classmethod
    def _group_reference(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name a group")
        if any(unicodedata.category(char)[0] == "C" for char in value):
            raise ValueError("must not contain control characters")
        if "=" in value:
            if not is_dn(value):
                raise ValueError("is not a valid DN (RFC 4514: escape , + = \\ and friends)")
        elif bad := sorted(_NOT_IN_ACCOUNT_NAMES.intersection(value)):
            raise ValueError(
                f"is not a sAMAccountName (AD allows no {' '.join(bad)} in one); "
                "give the group's DN instead"
            )
        return value


# Inside the class body ``Options`` is the class attribute, not a type mypy accepts in
# annotations; the methods are annotated with this name instead.
RemoveFromGroupOptions = Options


@responders.register("ad_remove_from_group")
class ADRemoveFromGroup:
    """Remove a user from the Active Directory group the policy names."""

    name = "ad_remove_from_group"
    target_kind: Kind = "user"
    label = "remove from group"
    reversible = True
    # low: one group, put back by Undo; high when the policy allows administrator groups
    impact = Impact.low
    Options = Options

    def __init__(self, options: RemoveFromGroupOptions, *, directory: ActiveDirectory) -> None:
        self.options = options
        self.directory = directory
        if options.allow_protected_groups:
            self.impact = Impact.high

    @classmethod
    def build(cls, options: RemoveFromGroupOptions, context: Context) -> ADRemoveFromGroup:
        """The responder on the process's shared directory client."""
        return cls(options, directory=context.directory())

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        group = self.options.group
        if not self.options.allow_protected_groups and group.casefold() in PROTECTED_NAMES:
            return f"Fido will refuse to remove {target} from {group}: an administrator group"
        return f"Remove {target}{person_details(facts)} from the Active Directory group {group}"

    async def execute(self, target: str) -> ResponderResult:
        group = await self._group(target, self.options.group)
        user = await self._user(target)
        account, name = user.get("sAMAccountName", target), _name(group)
        failed = f"Could not remove {target} from {name}"
        if _is_primary_group(user, group):
            raise ResponderError(
                f"Cannot remove {account} from {name}: it is their primary group, which AD "
                "keeps on the account (primaryGroupID), not in the group; nothing changed"
            )
        try:
            removed = await self.directory.remove_member(group["dn"], user["dn"])
            through = (
                [] if removed else await self.directory.groups_between(user["dn"], group["dn"])
            )
        except IntegrationError as exc:
            raise ResponderError(f"{failed}: {exc}") from exc
        if through:
            names = ", ".join(sorted(inner.name for inner in through))
            raise ResponderError(
                f"Cannot remove {account} from {name}: they are in it through {names}, not "
                f"directly; Fido removes direct memberships only, so nothing changed"
            )
        undo_data = {
            "group_dn": group["dn"],
            "user_dn": user["dn"],
            "group": name,
            "changed": removed,
        }
        if not removed:
            return ResponderResult(
                summary=f"{account} is not a member of {name}; nothing changed",
                undo_data=undo_data,
            )
        return ResponderResult(
            summary=f"Removed {account} ({user['dn']}) from the group {name} "
            f"({group['dn']}). Sessions already open keep the group's access until the user "
            "signs in again",
            undo_data=undo_data,
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        try:
            group_dn, user_dn = str(undo_data["group_dn"]), str(undo_data["user_dn"])
            name, changed = str(undo_data["group"]), bool(undo_data["changed"])
        except (KeyError, TypeError) as exc:
            raise ResponderError(
                f"Cannot undo removing {target} from a group: incomplete undo data"
            ) from exc
        if not changed:
            return ResponderResult(
                summary=f"{target} was not in {name} before Fido acted; nothing to undo"
            )
        group = await self._group(target, group_dn, undoing=True)
        try:
            added = await self.directory.add_member(group_dn, user_dn)
        except NotFoundError as exc:
            raise ResponderError(
                f"Cannot add {target} back to {name}: {user_dn} is no longer in Active "
                "Directory (moved or deleted?)"
            ) from exc
        except IntegrationError as exc:
            raise ResponderError(f"Could not add {target} back to {name}: {exc}") from exc
        if not added:
            return ResponderResult(
                summary=f"{target} ({user_dn}) is in {_name(group)} again already; nothing changed"
            )
        return ResponderResult(
            summary=f"Added {target} ({user_dn}) back to the group {_name(group)} ({group_dn})"
        )

    async def _group(self, target: str, group: str, *, undoing: bool = False) -> dict[str, Any]:
        """The group, or ResponderError when it is missing or protected."""
        verb = f"add {target} back to" if undoing else f"remove {target} from"
        try:
            found = await self.directory.get_group(group)
        except NotFoundError as exc:
            where = "is no longer in" if undoing else "is not a group in"
            raise ResponderError(f"Cannot {verb} {group}: it {where} Active Directory") from exc
        except IntegrationError as exc:
            raise ResponderError(f"Could not {verb} {group}: {exc}") from exc
        why = protection(found)
        if why and not self.options.allow_protected_groups:
            raise ResponderError(
                f"Refused to {verb} {_name(found)}: {why}. Changing its members is for a "
                "person to do (allow_protected_groups is off); nothing changed"
            )
        return found

    async def _user(self, target: str) -> dict[str, Any]:
        try:
            return await self.directory.get_user(target)
        except NotFoundError as exc:
            raise ResponderError(
                f"Cannot remove {target} from a group: no such account in Active Directory"
            ) from exc
        except IntegrationError as exc:
            raise ResponderError(f"Could not remove {target} from a group: {exc}") from exc


def protection(group: Mapping[str, Any]) -> str | None:
    """Why a group (as ``ActiveDirectory.find_group`` returns it) is protected; None if not."""
    sid = str(group.get("objectSid") or "")
    domain, _, rid = sid.rpartition("-")
    if sid in PROTECTED_BUILTIN_SIDS or (
        domain.startswith("S-1-5-21-") and rid.isdigit() and int(rid) in PROTECTED_DOMAIN_RIDS
    ):
        return "it is an administrator group"
    names = {str(group.get(key) or "").casefold() for key in ("cn", "sAMAccountName")}
    if names & PROTECTED_NAMES:
        return "it has the name of an administrator group"
    if group.get("adminCount"):
        return "Active Directory protects it as a privileged group (adminCount = 1)"
    return None


def _is_primary_group(user: Mapping[str, Any], group: Mapping[str, Any]) -> bool:
    user_sid, rid = user.get("objectSid"), user.get("primaryGroupID")
    if not user_sid or rid is None:
        return False
    return group.get("objectSid") == f"{str(user_sid).rpartition('-')[0]}-{rid}"


def _name(group: Mapping[str, Any]) -> str:
    return str(group.get("sAMAccountName") or group.get("cn") or group["dn"])
