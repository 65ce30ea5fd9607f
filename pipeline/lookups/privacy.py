"""What may be looked up, and where: the allowlist and the privacy screen.

The allowlist names known-good values that are never looked up at all (CIDRs for IPs,
suffix match for domains, exact or prefix for URLs, by account for users; a short host
name also covers its names under the internal domains).

The privacy screen keeps internal values away from external providers (a lookup with
``external`` True). It withholds:

- users, always (an account name says who works here);
- IPs that are not globally routable (private, loopback, link-local, CGNAT, reserved,
  documentation, multicast, IPv4-mapped forms of those) or inside ``internal_networks``;
- hosts without a dot, and hosts or domains under ``internal_domains`` or under a name that
  is only meaningful inside a network (``localhost``, ``local``, ``internal``, ``lan``,
  ``home.arpa`` …);
- URLs (and any e-mail address or hostname written inside a value) whose host is one of the
  above, or that mention an internal domain or a non-routable IPv4 address anywhere —
  path, query or user info — after percent-decoding.

Hashes are always allowed: that is what hash reputation services are for.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, urlsplit

from pipeline.observables import Kind, account_name
from pipeline.policy import Allowlist, PrivacyPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that resolve only inside a network (RFC 6761, 6762, 8375, ICANN's ".internal") and
# suffixes in common internal use that are not delegated in the public DNS.
LOCAL_SUFFIXES = (
    "localhost",
    "localdomain",
    "local",
    "internal",
    "intranet",
    "lan",
    "corp",
    "home.arpa",
    "arpa",
)
INTERNAL, INVALID = "internal", "invalid"
# A hostname-shaped token: dot-separated labels of letters, digits and hyphens.
_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")


def _ip(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _under(name: str, suffixes: tuple[str, ...] | list[str]) -> bool:
    """True when ``name`` is one of ``suffixes`` or a subdomain of one (label-wise)."""
    name = name.casefold().strip(".")
    return any(name == s or name.endswith("." + s) for s in suffixes)


class Screen:
    """The allowlist and privacy rules of one policy, parsed once."""

    def __init__(self, privacy: PrivacyPolicy, allowlist: Allowlist) -> None:
        self.internal_domains = list(privacy.internal_domains)
        self.internal_networks: list[IPNetwork] = [
            ipaddress.ip_network(n) for n in privacy.internal_networks
        ]
        self.allowed_networks: list[IPNetwork] = [ipaddress.ip_network(n) for n in allowlist.ips]
        self.allowed_domains = list(allowlist.domains)
        self.allowed_hashes = {h.strip().casefold() for h in allowlist.hashes}
        self.allowed_urls = [u.strip() for u in allowlist.urls if u.strip()]
        self.allowed_hosts = {h.strip().casefold().strip(".") for h in allowlist.hosts}
        self.allowed_users = {account_name(u) for u in allowlist.users}

    # -- the allowlist ----------------------------------------------------------------------

    def allowlisted(self, kind: Kind, value: str) -> bool:
        value = value.strip()
        if kind == "ip":
            ip = _ip(value)
            return ip is not None and any(ip in net for net in self.allowed_networks)
        if kind == "domain":
            return _under(value, self.allowed_domains)
        if kind == "hash":
            return value.casefold() in self.allowed_hashes
        if kind == "url":
            return any(
                value == entry or (entry.endswith("/") and value.startswith(entry))
                for entry in self.allowed_urls
            )
        if kind == "host":
            # "pc-1" also allows pc-1.corp.example, but not pc-1.anything-else
            name = value.casefold().strip(".")
            short, _, domain = name.partition(".")
            return name in self.allowed_hosts or (
                short in self.allowed_hosts and _under(domain, self.internal_domains)
            )
        return account_name(value) in self.allowed_users  # user

    # -- the privacy screen -----------------------------------------------------------------

    def withhold(self, kind: Kind, value: str) -> str | None:
        """Why ``value`` must not go to an external provider ("internal", "invalid"), or
        None when it may."""
        value = value.strip()
        if kind == "hash":
            return None
        if kind == "user":
            return INTERNAL
        if kind == "ip":
            ip = _ip(value)
            if ip is None:
                return INVALID
            return INTERNAL if self.internal_ip(ip) else None
        if kind in ("host", "domain"):
            if not value:
                return INVALID
            return INTERNAL if self.internal_name(value) or self._mentions(value) else None
        return self._url(value)

    def internal_ip(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return self.internal_ip(ip.ipv4_mapped)
        return not ip.is_global or any(ip in net for net in self.internal_networks)

    def internal_name(self, name: str) -> bool:
        """A host or domain name (or an IP literal) that only makes sense inside."""
        ip = _ip(name)
        if ip is not None:
            return self.internal_ip(ip)
        name = name.casefold().strip(".")
        if "." not in name:
            return True
        return _under(name, self.internal_domains) or _under(name, LOCAL_SUFFIXES)

    def _url(self, value: str) -> str | None:
        text = value if "://" in value else "//" + value
        try:
            host = urlsplit(text).hostname
        except ValueError:  # e.g. a malformed IPv6 literal
            return INVALID
        if host is None:
            # mailto:, or no host at all: only the mentions inside can tell
            return INTERNAL if self._mentions(value) else None
        if self.internal_name(host) or self._mentions(value):
            return INTERNAL
        return None

    def _mentions(self, value: str) -> bool:
        """Does the text name an internal domain, e-mail domain or non-routable IPv4?"""
        text = unquote(unquote(value)).casefold()
        for token in _HOSTNAME.findall(text):
            ip = _ip(token)
            if ip is not None:
                if self.internal_ip(ip):
                    return True
            elif _under(token, self.internal_domains) or _under(token, LOCAL_SUFFIXES):
                return True
        return False
