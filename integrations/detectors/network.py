"""Helpers several detectors share for network names, URLs and log times.

No detector lives here: these read values every network and log format writes the same
way — an IP or DNS name, a URL's host, a syslog time, a zone name.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

from integrations.detectors.common import ObservableBuilder, text
from pipeline.errors import ConfigError

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+"
    r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$"
)


def host_kind(name: str) -> str | None:
    """``ip`` for an IP literal, ``domain`` for a DNS name with a dot, else None (a bare
    label such as "intranet", a placeholder, free text)."""
    name = name.strip().rstrip(".")
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return "domain" if _HOSTNAME.match(name.lower()) else None
    return "ip"


def add_host(found: ObservableBuilder, value: Any, role: str | None = None) -> None:
    """A network name or address: an IP literal becomes an IP, a DNS name a domain;
    anything else is left out."""
    name = (text(value) or "").strip().rstrip(".")
    kind = host_kind(name) if name else None
    if kind == "ip":
        found.ip(name, role)
    elif kind == "domain":
        found.domain(name)


def url_host(url: str) -> str | None:
    """The host part of a URL, with or without a scheme ("example.com/x" as firewalls
    and proxies log it); None when there is none."""
    rest = url.split("://", 1)[1] if "://" in url else url
    authority = re.split(r"[/?#\\]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
    if authority.startswith("["):  # [IPv6]:port
        return authority[1:].split("]", 1)[0] or None
    if authority.count(":") == 1:
        authority = authority.split(":", 1)[0]
    return authority or None


def add_url(found: ObservableBuilder, value: Any, *, domain: bool = True) -> None:
    """A URL, and (unless ``domain`` is False) the domain or IP it points at."""
    url = text(value)
    if url is None:
        return
    found.url(url)
    host = url_host(url)
    if domain and host:
        add_host(found, host)


def zone(name: str) -> tzinfo:
    """The time zone ``name`` (e.g. "Europe/Paris"); ConfigError when unknown."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}") from None


def _known_zone(name: str) -> str:
    try:
        zone(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return name


# An option naming a time zone ("Europe/Paris", "UTC"), checked when the policy is read.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


def syslog_time(value: str, where: tzinfo) -> datetime:
    """A syslog time ("Nov 28 01:02:03") in the most recent year that is not in the
    future (a log read in January still holds December's lines)."""
    now = datetime.now(where)
    parsed = datetime.strptime(f"{now.year} {value}", "%Y %b %d %H:%M:%S")
    moment = parsed.replace(tzinfo=where)
    if moment > now + timedelta(days=1):
        moment = moment.replace(year=now.year - 1)
    return moment.astimezone(UTC)
