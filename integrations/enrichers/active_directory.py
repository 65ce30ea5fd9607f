"""Facts about users and hosts from Active Directory.

Users: who they are, their manager, every group they are in (nested too), whether that
makes them privileged and through which groups, and the account's state (disabled,
locked, last logon, password last set). Hosts: the computer account's OS, OU, description,
last logon and state. Facts are keyed by the observable as the alert gave it.

Privileged groups are recognised by SID first (names are localised and can be renamed) and
by name too: a look-alike "Domain Admins" elsewhere is reported privileged, which errs on
the safe side (Fido will not act on it automatically).
"""

from __future__ import annotations

import asyncio
from typing import Any

from integrations.directory.ad import ACCOUNTDISABLE, ActiveDirectory
from integrations.directory.records import Group, UserDetails
from integrations.directory.values import container_path, filetime_iso
from pipeline.observables import Observables
from pipeline.plugins import Context, Facts, NoOptions, enrichers

# Relative IDs of the domain's privileged groups (Enterprise and Schema Admins live in the
# forest root domain; their SIDs end in these RIDs whichever domain a user is in).
PRIVILEGED_DOMAIN_RIDS = {512: "Domain Admins", 518: "Schema Admins", 519: "Enterprise Admins"}
PRIVILEGED_BUILTIN_SIDS = {
    "S-1-5-32-544": "Administrators",
    "S-1-5-32-548": "Account Operators",
    "S-1-5-32-549": "Server Operators",
    "S-1-5-32-550": "Print Operators",
    "S-1-5-32-551": "Backup Operators",
}
PRIVILEGED_GROUPS = frozenset(
    name.casefold()
    for name in (*PRIVILEGED_DOMAIN_RIDS.values(), *PRIVILEGED_BUILTIN_SIDS.values())
)

_USER_FIELDS = {  # directory attribute -> fact name
    "sAMAccountName": "account",
    "displayName": "display_name",
    "mail": "mail",
    "title": "title",
    "department": "department",
    "manager": "manager",
}
_HOST_FIELDS = {
    "sAMAccountName": "account",
    "cn": "name",
    "dNSHostName": "dns_name",
    "operatingSystem": "os",
    "operatingSystemVersion": "os_version",
    "description": "description",
}


@enrichers.register("active_directory")
class ActiveDirectoryEnricher:
    """For each user and host observable: ``found``, and when found what AD knows."""

    name = "active_directory"
    Options = NoOptions  # the directory comes from the FIDO_AD_* settings

    def __init__(self, directory: ActiveDirectory) -> None:
        self.directory = directory

    @classmethod
    def build(cls, options: NoOptions, context: Context) -> ActiveDirectoryEnricher:
        return cls(context.directory())

    async def enrich(self, observables: Observables) -> Facts:
        accounts, hosts = observables.of("user"), observables.of("host")
        users, computers = await asyncio.gather(
            asyncio.gather(*(self.directory.describe_user(a) for a in accounts)),
            asyncio.gather(*(self.directory.find_computer(h) for h in hosts)),
        )
        facts: Facts = {
            Observables.key("user", account): user_facts(user)
            for account, user in zip(accounts, users, strict=True)
        }
        for host, computer in zip(hosts, computers, strict=True):
            facts[Observables.key("host", host)] = host_facts(computer)
        return facts


def is_privileged(group: Group) -> bool:
    """Whether membership of ``group`` makes an account privileged (by SID, or by name)."""
    if group.sid in PRIVILEGED_BUILTIN_SIDS:
        return True
    if group.sid and group.sid.startswith("S-1-5-21-"):
        if int(group.sid.rpartition("-")[2]) in PRIVILEGED_DOMAIN_RIDS:
            return True
    names = (group.name, group.account or "")
    return any(name.casefold() in PRIVILEGED_GROUPS for name in names)


def user_facts(details: UserDetails | None) -> dict[str, Any]:
    if details is None:
        return {"found": False}
    user = details.entry
    facts: dict[str, Any] = {"found": True, "dn": user["dn"]}
    for attribute, fact in _USER_FIELDS.items():
        if attribute in user:
            facts[fact] = user[attribute]
    if details.manager_name:
        facts["manager_name"] = details.manager_name
    facts["groups"] = _names(details.groups)
    if details.primary_group is not None:
        facts["primary_group"] = details.primary_group.name
    facts["privileged_groups"] = _privileged_groups(details)
    facts["privileged"] = bool(facts["privileged_groups"])
    facts["disabled"] = bool(user.get("userAccountControl", 0) & ACCOUNTDISABLE)
    facts["locked"] = details.locked
    if stamp := last_logon(user):
        facts["last_logon"] = stamp
    if stamp := filetime_iso(user.get("pwdLastSet")):
        facts["password_last_set"] = stamp
    return facts


def host_facts(computer: dict[str, Any] | None) -> dict[str, Any]:
    if computer is None:
        return {"found": False}
    facts: dict[str, Any] = {"found": True, "dn": computer["dn"]}
    for attribute, fact in _HOST_FIELDS.items():
        if attribute in computer:
            facts[fact] = computer[attribute]
    if ou := container_path(computer["dn"]):
        facts["ou"] = ou
    facts["disabled"] = bool(computer.get("userAccountControl", 0) & ACCOUNTDISABLE)
    if stamp := last_logon(computer):
        facts["last_logon"] = stamp
    return facts


def _privileged_groups(details: UserDetails) -> list[str]:
    groups = [*details.groups, *details.primary_group_parents]
    if details.primary_group is not None:
        groups.append(details.primary_group)
    names = {group.name for group in groups if is_privileged(group)}
    rid = details.entry.get("primaryGroupID")
    if details.primary_group is None and rid in PRIVILEGED_DOMAIN_RIDS:
        names.add(PRIVILEGED_DOMAIN_RIDS[rid])  # could not read the group; its RID says enough
    return sorted(names, key=str.casefold)


def _names(groups: tuple[Group, ...]) -> list[str]:
    return sorted({group.name for group in groups}, key=str.casefold)


def last_logon(entry: dict[str, Any]) -> str | None:
    """The later of ``lastLogonTimestamp`` (replicated, but only updated every 9-14 days)
    and ``lastLogon`` (exact, but this DC's alone), as ISO 8601 UTC; None if never."""
    return filetime_iso(max(entry.get("lastLogonTimestamp", 0), entry.get("lastLogon", 0)))
