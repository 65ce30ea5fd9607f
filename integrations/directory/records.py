"""What the directory client returns about a user beyond its own attributes, and how
observable values become search candidates."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Group:
    """A group an account is in: its DN, its name (the CN) and, when readable, its SID."""

    dn: str
    name: str
    sid: str | None = None
    account: str | None = None  # sAMAccountName ("pre-Windows 2000" name)


@dataclass(frozen=True)
class UserDetails:
    """A user and everything the enricher derives facts from, read in one go."""

    entry: dict[str, Any]  # the user's attributes, as ``ActiveDirectory.find_user`` returns
    groups: tuple[Group, ...] = ()  # via ``member``, directly or nested
    primary_group: Group | None = None  # from primaryGroupID (not in ``member``)
    primary_group_parents: tuple[Group, ...] = ()  # groups the primary group is in, nested
    manager_name: str | None = None
    locked: bool = False


Candidates = list[tuple[str, str]]  # (attribute, value) to try in order


def user_candidates(account: str) -> Candidates:
    """``DOMAIN\\name`` and ``name`` by sAMAccountName; ``x@y`` by UPN, then mail."""
    account = account.strip()
    if "\\" in account:
        name = account.partition("\\")[2].strip()
        return [("sAMAccountName", name)] if name else []
    if "@" in account:
        return [("userPrincipalName", account), ("mail", account)]
    return [("sAMAccountName", account)] if account else []


def computer_candidates(host: str, domain: str) -> Candidates:
    """How to find the computer a host observable names, most specific first.

    ``PC01$`` is an account name; ``PC01`` the account ``PC01$`` or, past the 15 characters
    an account name holds, the CN. An FQDN matches ``dNSHostName``; and when it is in the
    directory's own DNS domain, its first label is tried as a name too (``pc01.other.org``
    is someone else's PC01). IP addresses are not computer names: no candidates.
    """
    host = host.strip().rstrip(".")
    if not host or _is_ip(host):
        return []
    if host.endswith("$"):
        return [("sAMAccountName", host)]
    if "." not in host:
        return [("sAMAccountName", f"{host}$"), ("cn", host)]
    label, _, suffix = host.partition(".")
    found: Candidates = [("dNSHostName", host)]
    if label and suffix.casefold() == domain.casefold():
        found += [("sAMAccountName", f"{label}$"), ("cn", label)]
    return found


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
