"""Active Directory over LDAP: users (with nested groups), computers, ``userAccountControl``,
``pwdLastSet``, and group membership.

Every call runs in a worker thread (``asyncio.to_thread``) on the one shared, bound
connection (``connection.py``). Every value put into a search filter is escaped with
``escape_filter_chars`` (DNs too: a DN may hold ``*``, ``(`` or ``\\``), so an alert can
never widen a search. Nested groups come from AD's in-chain matching rule in one query;
the directory walks the graph, not Python.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from integrations.directory.config import ADConfig
from integrations.directory.connection import SUCCESS, Ldap, SharedConnection
from integrations.directory.records import (
    Candidates,
    Group,
    UserDetails,
    computer_candidates,
    user_candidates,
)
from integrations.directory.values import dns_domain, is_locked, rdn_value
from pipeline.errors import IntegrationError, NotFoundError

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"\w+ is deprecated\. Please use \w+ instead", category=DeprecationWarning
    )
    import ldap3
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import parse_dn

__all__ = ["ACCOUNTDISABLE", "ADConfig", "ActiveDirectory", "Group", "UserDetails", "is_dn"]

T = TypeVar("T")

ACCOUNTDISABLE = 0x2
"""The ``userAccountControl`` bit that disables an account."""

DONT_EXPIRE_PASSWORD = 0x10000
"""``userAccountControl``: the password never expires (the DC ignores ``pwdLastSet = 0``)."""
SMARTCARD_REQUIRED = 0x40000
"""``userAccountControl``: sign-in by smart card only (the DC ignores ``pwdLastSet = 0``)."""
MUST_CHANGE_PASSWORD, PASSWORD_SET_NOW = 0, -1
"""The only values AD accepts in ``pwdLastSet``: 0 sets "must change password at next logon";
-1 makes the DC store the current time, which clears it (the old time cannot be written back)."""

IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: transitive membership

USER_ATTRIBUTES = [
    "sAMAccountName",
    "userPrincipalName",
    "displayName",
    "mail",
    "title",
    "department",
    "manager",
    "memberOf",
    "userAccountControl",
    "primaryGroupID",
    "objectSid",
    "lockoutTime",
    "lastLogon",
    "lastLogonTimestamp",
    "pwdLastSet",
]
GROUP_ATTRIBUTES = ["cn", "sAMAccountName", "objectSid"]
GROUP_LOOKUP_ATTRIBUTES = [*GROUP_ATTRIBUTES, "adminCount"]
COMPUTER_ATTRIBUTES = [
    "cn",
    "sAMAccountName",
    "dNSHostName",
    "operatingSystem",
    "operatingSystemVersion",
    "description",
    "userAccountControl",
    "lastLogon",
    "lastLogonTimestamp",
]
_USERS = "(objectCategory=person)(objectClass=user)"
_COMPUTERS = "(objectCategory=computer)"
_COMPUTED_UAC = "msDS-User-Account-Control-Computed"
_GROUPS = "(objectClass=group)"
# Modify results that mean "already so" (membership is read first, so only when another
# change wins the race): 16 for deleting a value that is not there; 20 (Samba: 68) for
# adding one that is.
NO_SUCH_ATTRIBUTE, VALUE_EXISTS, ENTRY_EXISTS = 16, 20, 68


class ActiveDirectory:
    """An async client for one AD domain, sharing one bound LDAP connection."""

    def __init__(self, config: ADConfig) -> None:
        self.config = config
        self._ldap = SharedConnection(config)
        self.dns_domain = dns_domain(config.base_dn)

    def __repr__(self) -> str:
        return f"ActiveDirectory(url={self.config.url!r}, bind_dn={self.config.bind_dn!r})"

    async def __aenter__(self) -> ActiveDirectory:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Unbind the shared connection, if any. The client reconnects when used again."""
        await asyncio.to_thread(self._ldap.close)

    async def find_user(self, account: str) -> dict[str, Any] | None:
        """Find a user by ``sAMAccountName``, ``DOMAIN\\\\name``, or ``name@domain``.

        ``name@domain`` is matched against ``userPrincipalName``, then ``mail``. Returns the
        user's attributes (``dn``, ``memberOf`` and ``userAccountControl`` always; others
        only when set; FILETIMEs as integers, ``objectSid`` as text), or None.
        """
        candidates = user_candidates(account)
        return await self._call(
            lambda ldap: self._find(ldap, _USERS, candidates, USER_ATTRIBUTES, "users"),
            f"looking up user {account!r}",
        )

    async def get_user(self, account: str) -> dict[str, Any]:
        """Like ``find_user``, but raise NotFoundError when there is no such user."""
        user = await self.find_user(account)
        if user is None:
            raise NotFoundError(f"no user {account!r} in the directory ({self.config.base_dn})")
        return user

    async def describe_user(self, account: str) -> UserDetails | None:
        """A user with their groups (nested, and the primary group), manager's name and
        lockout state, read in one turn on the connection; None when there is no such user."""
        candidates = user_candidates(account)

        def op(ldap: Ldap) -> UserDetails | None:
            user = self._find(ldap, _USERS, candidates, USER_ATTRIBUTES, "users")
            return None if user is None else self._details(ldap, user)

        return await self._call(op, f"describing user {account!r}")

    async def find_computer(self, host: str) -> dict[str, Any] | None:
        """The computer a host observable names (``PC01``, ``PC01$`` or its FQDN); None if
        there is none. Attributes as ``find_user`` returns them."""
        candidates = computer_candidates(host, self.dns_domain)
        return await self._call(
            lambda ldap: self._find(ldap, _COMPUTERS, candidates, COMPUTER_ATTRIBUTES, "computers"),
            f"looking up computer {host!r}",
        )

    async def get_display_name(self, dn: str) -> str | None:
        """The ``displayName`` of the entry at ``dn``; None if it has none or does not exist."""
        return await self._call(lambda ldap: _display_name(ldap, dn), f"reading {dn!r}")

    async def get_user_account_control(self, dn: str) -> int:
        """The current ``userAccountControl`` of the entry at ``dn``."""

        def op(ldap: Ldap) -> int:
            entry = ldap.read(dn, ["userAccountControl"])
            if "userAccountControl" not in entry:
                raise IntegrationError(f"{dn!r} has no userAccountControl; is it a user?")
            return int(entry["userAccountControl"])

        return await self._call(op, f"reading userAccountControl of {dn!r}")

    async def set_user_account_control(self, dn: str, value: int) -> None:
        """Replace ``userAccountControl`` of the entry at ``dn`` with ``value``."""
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"userAccountControl must fit in 32 bits, not {value}")
        await self._call(
            lambda ldap: ldap.replace(dn, "userAccountControl", str(value)),
            f"writing userAccountControl of {dn!r}",
        )

    async def get_pwd_last_set(self, dn: str) -> int:
        """``pwdLastSet`` of the user at ``dn`` (FILETIME; 0: must change at next logon)."""

        def op(ldap: Ldap) -> int:
            entry = ldap.read(dn, ["pwdLastSet"])
            if "pwdLastSet" not in entry:
                raise IntegrationError(f"{dn!r} has no pwdLastSet; is it a user?")
            return int(entry["pwdLastSet"])

        return await self._call(op, f"reading pwdLastSet of {dn!r}")

    async def set_pwd_last_set(self, dn: str, value: int) -> None:
        """Write ``pwdLastSet`` of the user at ``dn``: ``MUST_CHANGE_PASSWORD`` (0) or
        ``PASSWORD_SET_NOW`` (-1), the only values AD accepts."""
        if value not in (MUST_CHANGE_PASSWORD, PASSWORD_SET_NOW):
            raise ValueError(f"pwdLastSet can only be set to 0 or -1, not {value}")
        await self._call(
            lambda ldap: ldap.replace(dn, "pwdLastSet", str(value)),
            f"writing pwdLastSet of {dn!r}",
        )

    async def find_group(self, group: str) -> dict[str, Any] | None:
        """A group by ``sAMAccountName``, or by DN (only under the base DN); None if there is
        none (a malformed DN names none). ``dn``, ``cn``, ``sAMAccountName``, ``objectSid``
        (text) and ``adminCount`` (0 when unset)."""

        def op(ldap: Ldap) -> dict[str, Any] | None:
            if "=" not in group:
                candidates = [("sAMAccountName", group.strip())]
                found = self._find(ldap, _GROUPS, candidates, GROUP_LOOKUP_ATTRIBUTES, "groups")
            else:
                found = self._group_at(ldap, group.strip())
            if found is not None:
                found["adminCount"] = int(found.get("adminCount") or 0)
            return found

        return await self._call(op, f"looking up group {group!r}")

    async def get_group(self, group: str) -> dict[str, Any]:
        """Like ``find_group``, but raise NotFoundError when there is no such group."""
        found = await self.find_group(group)
        if found is None:
            raise NotFoundError(f"no group {group!r} in the directory ({self.config.base_dn})")
        return found

    async def remove_member(self, group_dn: str, member_dn: str) -> bool:
        """Take ``member_dn`` out of the group's ``member``; False if it was not in it."""

        def op(ldap: Ldap) -> bool:
            if not _has_member(ldap, group_dn, member_dn):
                return False
            change = {"member": [(ldap3.MODIFY_DELETE, [member_dn])]}
            return _modify(ldap, group_dn, change, also=(NO_SUCH_ATTRIBUTE,)) == SUCCESS

        return await self._call(op, f"removing {member_dn!r} from {group_dn!r}")

    async def add_member(self, group_dn: str, member_dn: str) -> bool:
        """Put ``member_dn`` into the group's ``member``; False if it was there already.
        NotFoundError names whichever of the two is missing."""

        def op(ldap: Ldap) -> bool:
            if _has_member(ldap, group_dn, member_dn):
                return False
            ldap.read(member_dn, ["objectClass"])  # NotFoundError naming the member
            change = {"member": [(ldap3.MODIFY_ADD, [member_dn])]}
            return _modify(ldap, group_dn, change, also=(VALUE_EXISTS, ENTRY_EXISTS)) == SUCCESS

        return await self._call(op, f"adding {member_dn!r} to {group_dn!r}")

    async def groups_between(self, member_dn: str, group_dn: str) -> list[Group]:
        """The groups ``member_dn`` is directly in that are in ``group_dn`` themselves
        (nested at any depth): how it is in the group without being in its ``member``."""
        member, group = escape_filter_chars(member_dn), escape_filter_chars(group_dn)
        condition = f"(member={member})(memberOf:{IN_CHAIN}:={group})"
        return await self._call(
            lambda ldap: self._groups(ldap, condition),
            f"reading how {member_dn!r} is in {group_dn!r}",
        )

    # --- everything below runs in a worker thread ---------------------------------------

    async def _call(self, op: Callable[[Ldap], T], what: str) -> T:
        return await asyncio.to_thread(self._ldap.run, op, what)

    def _find(
        self, ldap: Ldap, kind: str, candidates: Candidates, attributes: list[str], what: str
    ) -> dict[str, Any] | None:
        """The one entry of ``kind`` matching the first candidate that matches any."""
        for attribute, value in candidates:
            search = f"(&{kind}({attribute}={escape_filter_chars(value)}))"
            found = ldap.search(self.config.base_dn, search, attributes, size_limit=2)
            if len(found) > 1:
                raise IntegrationError(
                    f"{len(found)} directory {what} have {attribute} {value!r}; "
                    "refusing to guess which one is meant"
                )
            if found:
                return found[0]
        return None

    def _group_at(self, ldap: Ldap, dn: str) -> dict[str, Any] | None:
        """The group whose DN is ``dn`` (the server compares DNs), if it is under the base."""
        if not _is_under(dn, self.config.base_dn):
            return None
        search = f"(&{_GROUPS}(distinguishedName={escape_filter_chars(dn)}))"
        try:
            found = ldap.search(dn, search, GROUP_LOOKUP_ATTRIBUTES, size_limit=2)
        except NotFoundError:
            return None
        return found[0] if len(found) == 1 else None

    def _details(self, ldap: Ldap, user: dict[str, Any]) -> UserDetails:
        dn = user["dn"]
        groups = self._groups(ldap, f"(member:{IN_CHAIN}:={escape_filter_chars(dn)})")
        primary, parents = self._primary_group(ldap, user)
        manager = user.get("manager")
        return UserDetails(
            entry=user,
            groups=tuple(groups),
            primary_group=primary,
            primary_group_parents=tuple(parents),
            manager_name=_display_name(ldap, manager) if manager else None,
            locked=self._locked(ldap, user),
        )

    def _primary_group(self, ldap: Ldap, user: dict[str, Any]) -> tuple[Group | None, list[Group]]:
        """The primary group (by SID: domain SID + primaryGroupID) and, in the same query,
        the groups it is nested in (``<SID=…>`` is AD's accepted form of a DN)."""
        user_sid, rid = user.get("objectSid"), user.get("primaryGroupID")
        if not user_sid or rid is None:
            return None, []
        sid = f"{user_sid.rpartition('-')[0]}-{rid}"
        escaped = escape_filter_chars(sid)
        found = self._groups(ldap, f"(|(objectSid={escaped})(member:{IN_CHAIN}:=<SID={escaped}>))")
        primary = next((group for group in found if group.sid == sid), None)
        return primary, [group for group in found if group.sid != sid]

    def _groups(self, ldap: Ldap, condition: str) -> list[Group]:
        search = f"(&(objectClass=group){condition})"
        entries = ldap.search(self.config.base_dn, search, GROUP_ATTRIBUTES)
        return [
            Group(
                dn=entry["dn"],
                name=entry.get("cn") or rdn_value(entry["dn"]),
                sid=entry.get("objectSid"),
                account=entry.get("sAMAccountName"),
            )
            for entry in entries
        ]

    def _locked(self, ldap: Ldap, user: dict[str, Any]) -> bool:
        # A constructed attribute (the DC applies fine-grained policies): read at base scope,
        # where AD computes constructed attributes, rather than trusting the subtree search.
        computed = ldap.read(user["dn"], [_COMPUTED_UAC]).get(_COMPUTED_UAC)
        duration = None
        if computed is None and user.get("lockoutTime"):
            duration = ldap.read(self.config.base_dn, ["lockoutDuration"]).get("lockoutDuration")
        return is_locked(
            computed=computed,
            lockout_time=user.get("lockoutTime"),
            lockout_duration=duration,
            now=datetime.now(UTC),
        )


def _display_name(ldap: Ldap, dn: str) -> str | None:
    try:
        name = ldap.read(dn, ["displayName"]).get("displayName")
    except NotFoundError:
        return None
    return str(name) if name else None


def is_dn(value: str) -> bool:
    """Whether ``value`` is a well-formed DN (RFC 4514, as ldap3 checks one before use)."""
    try:
        parse_dn(value, strip=True)
    except LDAPInvalidDnError:
        return False
    return True


def _is_under(dn: str, base: str) -> bool:
    if not is_dn(dn):
        return False
    parts = [(kind.casefold(), value.casefold()) for kind, value, _ in parse_dn(dn, strip=True)]
    tail = [(kind.casefold(), value.casefold()) for kind, value, _ in parse_dn(base, strip=True)]
    return len(parts) > len(tail) and parts[-len(tail) :] == tail


def _has_member(ldap: Ldap, group_dn: str, member_dn: str) -> bool:
    """Whether ``member_dn`` is in the group's own ``member`` (the server compares DNs)."""
    group, member = escape_filter_chars(group_dn), escape_filter_chars(member_dn)
    search = f"(&{_GROUPS}(distinguishedName={group})(member={member}))"
    return bool(ldap.search(group_dn, search, ["cn"], size_limit=1))


def _modify(ldap: Ldap, dn: str, changes: dict[str, Any], *, also: tuple[int, ...]) -> int:
    """Apply ``changes`` to ``dn``; the result code: success, or one of ``also``."""
    conn = ldap._conn  # ``Ldap`` has ``replace`` only; this is its sibling for other changes
    conn.modify(dn, changes)
    ldap.check(dn, allowed=(SUCCESS, *also))
    return int(conn.result["result"])
