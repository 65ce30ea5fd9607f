"""Active Directory over LDAP: look users up, read and write ``userAccountControl``.

ldap3 is synchronous; every call here runs in a worker thread (``asyncio.to_thread``) on one
bound connection that is reused, guarded by a lock, and replaced when the server drops it.
Values put into search filters are always escaped. The bind password is unwrapped only to
bind, then wiped from the ldap3 connection (whose repr would otherwise show it).
"""

from __future__ import annotations

import asyncio
import math
import ssl
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from pipeline.errors import IntegrationError, NotFoundError

with warnings.catch_warnings():
    # ldap3 2.9.1 imports names that pyasn1 >= 0.6 has deprecated (tagMap, typeMap).
    warnings.filterwarnings(
        "ignore", message=r"\w+ is deprecated\. Please use \w+ instead", category=DeprecationWarning
    )
    import ldap3
    from ldap3.core import exceptions as ldap_errors
    from ldap3.utils.conv import escape_filter_chars

T = TypeVar("T")

ACCOUNTDISABLE = 0x2
"""The ``userAccountControl`` bit that disables an account."""

USER_ATTRIBUTES = (
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
)
_INTEGERS = frozenset({"userAccountControl", "primaryGroupID"})
_SUCCESS, _SIZE_LIMIT_EXCEEDED, _NO_SUCH_OBJECT = 0, 4, 32


class ADConfig(BaseModel):
    """How to reach and bind to the directory. The password never appears in reprs."""

    model_config = ConfigDict(frozen=True)

    url: str
    bind_dn: str
    password: SecretStr
    base_dn: str
    start_tls: bool = False
    verify_tls: bool = True
    # PEM file of the CA that signed the DC's certificate; the system's CAs when unset.
    ca_file: str | None = None
    timeout: float = 10.0

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError("must be an ldap:// or ldaps:// URL with a host")
        return value

    @model_validator(mode="after")
    def _tls_once(self) -> ADConfig:
        if self.start_tls and urlsplit(self.url).scheme == "ldaps":
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is already encrypted")
        return self


class ActiveDirectory:
    """An async client for one AD domain, sharing one bound LDAP connection."""

    def __init__(self, config: ADConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._conn: ldap3.Connection | None = None

    def __repr__(self) -> str:
        return f"ActiveDirectory(url={self.config.url!r}, bind_dn={self.config.bind_dn!r})"

    async def __aenter__(self) -> ActiveDirectory:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Unbind the shared connection, if any. The client reconnects when used again."""
        await asyncio.to_thread(self._close)

    async def find_user(self, account: str) -> dict[str, Any] | None:
        """Find a user by ``sAMAccountName``, ``DOMAIN\\\\name``, or ``name@domain``.

        ``name@domain`` is matched against ``userPrincipalName``, then ``mail``. Returns the
        user's attributes (``dn``, ``memberOf`` and ``userAccountControl`` always; others
        only when set), or None when there is no such user.
        """
        account = account.strip()
        if "\\" in account:
            candidates = [("sAMAccountName", account.partition("\\")[2].strip())]
        elif "@" in account:
            candidates = [("userPrincipalName", account), ("mail", account)]
        else:
            candidates = [("sAMAccountName", account)]
        if not candidates[0][1]:
            return None

        def op(conn: ldap3.Connection) -> dict[str, Any] | None:
            for attribute, value in candidates:
                found = self._search_users(conn, attribute, value)
                if len(found) > 1:
                    raise IntegrationError(
                        f"{len(found)} directory users have {attribute} {value!r}; "
                        "refusing to guess which one is meant"
                    )
                if found:
                    return found[0]
            return None

        return await self._call(op, f"looking up user {account!r}")

    async def get_user(self, account: str) -> dict[str, Any]:
        """Like ``find_user``, but raise NotFoundError when there is no such user."""
        user = await self.find_user(account)
        if user is None:
            raise NotFoundError(f"no user {account!r} in the directory ({self.config.base_dn})")
        return user

    async def get_display_name(self, dn: str) -> str | None:
        """The ``displayName`` of the entry at ``dn``; None if it has none or does not exist."""

        def op(conn: ldap3.Connection) -> str | None:
            try:
                entry = self._read(conn, dn, ["displayName"])
            except NotFoundError:
                return None
            return entry.get("displayName")

        return await self._call(op, f"reading {dn!r}")

    async def get_user_account_control(self, dn: str) -> int:
        """The current ``userAccountControl`` of the entry at ``dn``."""

        def op(conn: ldap3.Connection) -> int:
            entry = self._read(conn, dn, ["userAccountControl"])
            if "userAccountControl" not in entry:
                raise IntegrationError(f"{dn!r} has no userAccountControl; is it a user?")
            return int(entry["userAccountControl"])

        return await self._call(op, f"reading userAccountControl of {dn!r}")

    async def set_user_account_control(self, dn: str, value: int) -> None:
        """Replace ``userAccountControl`` of the entry at ``dn`` with ``value``."""
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"userAccountControl must fit in 32 bits, not {value}")

        def op(conn: ldap3.Connection) -> None:
            conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(value)])]})
            self._check(conn, dn)

        await self._call(op, f"writing userAccountControl of {dn!r}")

    # --- everything below runs in a worker thread ---------------------------------------

    async def _call(self, op: Callable[[ldap3.Connection], T], what: str) -> T:
        return await asyncio.to_thread(self._run, op, what)

    def _run(self, op: Callable[[ldap3.Connection], T], what: str) -> T:
        with self._lock:
            for attempt in (1, 2):
                conn = self._conn or self._connect()
                try:
                    return op(conn)
                except ldap_errors.LDAPCommunicationError as exc:
                    self._drop()  # the server went away or closed an idle connection
                    if attempt == 2:
                        raise self._error(f"{what} failed", exc) from exc
                except ldap_errors.LDAPException as exc:
                    self._drop()
                    raise self._error(f"{what} failed", exc) from exc
            raise AssertionError("unreachable")

    def _connect(self) -> ldap3.Connection:
        cfg = self.config
        parts = urlsplit(cfg.url)
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED if cfg.verify_tls else ssl.CERT_NONE,
            ca_certs_file=cfg.ca_file,
            sni=parts.hostname,
        )
        server = ldap3.Server(
            parts.hostname or "",
            port=parts.port,
            use_ssl=parts.scheme == "ldaps",
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=cfg.timeout,
        )
        conn = ldap3.Connection(
            server,
            user=cfg.bind_dn,
            password=cfg.password.get_secret_value(),
            auto_referrals=False,  # never chase referrals to other hosts
            raise_exceptions=False,
            receive_timeout=max(1, math.ceil(cfg.timeout)),  # ldap3 packs it as an integer
        )
        try:
            conn.open()
            if cfg.start_tls and not conn.start_tls():
                raise self._error("StartTLS failed", conn.result)
            if not conn.bind():
                raise self._error(f"bind as {cfg.bind_dn!r} failed", conn.result)
        except (ldap_errors.LDAPException, OSError) as exc:
            self._unbind(conn)
            raise self._error(f"cannot connect as {cfg.bind_dn!r}", exc) from exc
        except IntegrationError:
            self._unbind(conn)
            raise
        finally:
            conn.password = None
        self._conn = conn
        return conn

    def _search_users(
        self, conn: ldap3.Connection, attribute: str, value: str
    ) -> list[dict[str, Any]]:
        escaped = escape_filter_chars(value)
        search = f"(&(objectCategory=person)(objectClass=user)({attribute}={escaped}))"
        conn.search(self.config.base_dn, search, attributes=list(USER_ATTRIBUTES), size_limit=2)
        self._check(conn, self.config.base_dn, allowed=(_SUCCESS, _SIZE_LIMIT_EXCEEDED))
        return [_normalise(item) for item in conn.response or [] if _is_entry(item)]

    def _read(self, conn: ldap3.Connection, dn: str, attributes: list[str]) -> dict[str, Any]:
        conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=attributes)
        self._check(conn, dn)
        entries = [_normalise(item) for item in conn.response or [] if _is_entry(item)]
        if not entries:
            raise NotFoundError(f"no directory entry {dn!r}")
        return entries[0]

    def _check(
        self, conn: ldap3.Connection, dn: str, allowed: tuple[int, ...] = (_SUCCESS,)
    ) -> None:
        result = conn.result or {}
        code = result.get("result")
        if code in allowed:
            return
        if code == _NO_SUCH_OBJECT:
            raise NotFoundError(f"no directory entry {dn!r}")
        raise self._error(f"directory refused the operation on {dn!r}", result)

    def _error(self, what: str, cause: object) -> IntegrationError:
        if isinstance(cause, dict):
            detail = " ".join(str(cause.get(key) or "") for key in ("description", "message"))
        else:
            detail = str(cause) or type(cause).__name__
        message = f"Active Directory at {self.config.url}: {what}: {detail.strip()}"
        secret = self.config.password.get_secret_value()
        if secret:
            message = message.replace(secret, "**********")
        return IntegrationError(message)

    def _drop(self) -> None:
        if self._conn is not None:
            self._unbind(self._conn)
            self._conn = None

    def _close(self) -> None:
        with self._lock:
            self._drop()

    @staticmethod
    def _unbind(conn: ldap3.Connection) -> None:
        try:
            conn.unbind()
        except (ldap_errors.LDAPException, OSError):
            pass
        if conn.socket is not None:  # ldap3 leaves it open when opening the connection failed
            try:
                conn.socket.close()
            except OSError:
                pass


def _is_entry(item: dict[str, Any]) -> bool:
    return item.get("type") == "searchResEntry"


def _normalise(item: dict[str, Any]) -> dict[str, Any]:
    """One search result as plain values: ``memberOf`` a list, integers as int, no empties."""
    attributes: dict[str, Any] = item.get("attributes") or {}
    user: dict[str, Any] = {"dn": item["dn"]}
    for name, values in attributes.items():
        values = [_text(value) for value in (values if isinstance(values, list) else [values])]
        if name == "memberOf":
            user[name] = values
        elif values and values[0] != "":
            user[name] = int(values[0]) if name in _INTEGERS else values[0]
    if "userAccountControl" in attributes:
        user.setdefault("memberOf", [])
    return user


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
