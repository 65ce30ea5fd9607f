"""Facts about users from Active Directory: who they are, their manager, groups, state."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from integrations.directory.ad import ACCOUNTDISABLE, ActiveDirectory
from pipeline.observables import Observables
from pipeline.plugins import Facts, enrichers

PRIVILEGED_GROUPS = frozenset(
    {
        "domain admins",
        "enterprise admins",
        "schema admins",
        "administrators",
        "account operators",
        "backup operators",
    }
)
# A primary group does not appear in memberOf: Domain Admins, Schema Admins, Enterprise Admins.
PRIVILEGED_PRIMARY_GROUP_RIDS = frozenset({512, 518, 519})

_FIELDS = {  # directory attribute -> fact name
    "sAMAccountName": "account",
    "displayName": "display_name",
    "mail": "mail",
    "title": "title",
    "department": "department",
    "manager": "manager",
}


@enrichers.register("active_directory")
class ActiveDirectoryEnricher:
    """For each user observable: ``found``, and when found who they are and their state."""

    name = "active_directory"

    def __init__(self, directory: ActiveDirectory) -> None:
        self.directory = directory

    async def enrich(self, observables: Observables) -> Facts:
        accounts = observables.of("user")
        users = await asyncio.gather(*(self.directory.find_user(a) for a in accounts))
        managers = sorted({user["manager"] for user in users if user and "manager" in user})
        names = await asyncio.gather(*(self.directory.get_display_name(m) for m in managers))
        manager_names = {dn: name for dn, name in zip(managers, names, strict=True) if name}
        return {
            Observables.key("user", account): _facts(user, manager_names)
            for account, user in zip(accounts, users, strict=True)
        }


def _facts(user: dict[str, Any] | None, manager_names: dict[str, str]) -> dict[str, Any]:
    if user is None:
        return {"found": False}
    facts: dict[str, Any] = {"found": True, "dn": user["dn"]}
    for attribute, fact in _FIELDS.items():
        if attribute in user:
            facts[fact] = user[attribute]
    if user.get("manager") in manager_names:
        facts["manager_name"] = manager_names[user["manager"]]
    groups = sorted((group_name(dn) for dn in user.get("memberOf", [])), key=str.casefold)
    facts["groups"] = groups
    facts["disabled"] = bool(user.get("userAccountControl", 0) & ACCOUNTDISABLE)
    facts["privileged"] = (
        any(group.casefold() in PRIVILEGED_GROUPS for group in groups)
        or user.get("primaryGroupID") in PRIVILEGED_PRIMARY_GROUP_RIDS
    )
    return facts


_FIRST_RDN_VALUE = re.compile(r"^[^=]*=((?:\\.|[^,+\\])*)")
_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)")


def group_name(dn: str) -> str:
    """The value of a DN's first RDN, unescaped: ``CN=Ops\\, EU,OU=G,...`` -> ``Ops, EU``."""
    match = _FIRST_RDN_VALUE.match(dn)
    value = match.group(1).strip() if match else dn
    raw = bytearray()
    position = 0
    for escape in _ESCAPE.finditer(value):
        raw += value[position : escape.start()].encode()
        escaped = escape.group(1)
        raw += bytes.fromhex(escaped) if len(escaped) == 2 else escaped.encode()
        position = escape.end()
    raw += value[position:].encode()
    return raw.decode("utf-8", errors="replace")
