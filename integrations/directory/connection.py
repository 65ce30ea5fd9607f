"""One bound LDAP connection, shared and reused, with TLS that is actually verified.

ldap3 is synchronous and its connections are not safe to share between threads, so the
client keeps one bound connection and runs each unit of work on it under a lock, in a worker
thread. A connection the server dropped (idle timeout, restart) is replaced once, at once;
any other failure drops it too, so the next call starts clean. A pool buys nothing here:
the enricher's queries take milliseconds, and one connection per process is what domain
controllers' administrators expect from a service account.

TLS is verified by the ``ssl`` module during the handshake (chain and host name, IP
addresses included): ldap3's own check runs after the handshake through
``ssl.match_hostname``, which is deprecated and gone in Python 3.12.
"""

from __future__ import annotations

import math
import re
import ssl
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from integrations.directory.config import ADConfig
from integrations.directory.values import normalise
from pipeline.errors import IntegrationError, NotFoundError

with warnings.catch_warnings():
    # ldap3 2.9.1 imports names that pyasn1 >= 0.6 has deprecated (tagMap, typeMap).
    warnings.filterwarnings(
        "ignore", message=r"\w+ is deprecated\. Please use \w+ instead", category=DeprecationWarning
    )
    import ldap3
    from ldap3.core import exceptions as ldap_errors

T = TypeVar("T")

SUCCESS, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT = 0, 4, 32
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
_SSL_REASON = re.compile(r"\[SSL: \w+\][^(]*")  # "[SSL: CODE] why", without "(_ssl.c:…)"


class VerifiedTls(ldap3.Tls):
    """ldap3's Tls, with the handshake and the certificate checks left to ``ssl``."""

    def __init__(self, config: ADConfig) -> None:
        validate = ssl.CERT_REQUIRED if config.verify_tls else ssl.CERT_NONE
        ca_file = str(config.ca_file) if config.ca_file else None
        super().__init__(validate=validate, ca_certs_file=ca_file, sni=config.host)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        context.check_hostname = config.verify_tls
        context.verify_mode = validate
        self._context = context
        self._server_name = config.host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._server_name,
        )


class Ldap:
    """The operations one unit of work may run on the bound connection."""

    def __init__(self, conn: ldap3.Connection, shared: SharedConnection) -> None:
        self._conn = conn
        self._shared = shared

    def search(
        self,
        base: str,
        search_filter: str,
        attributes: list[str],
        *,
        size_limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Entries under ``base`` (subtree). With ``size_limit``, at most that many, in one
        request; without, every match, fetched in pages (AD caps a reply at 1000)."""
        conn = self._conn
        if size_limit:
            conn.search(base, search_filter, attributes=attributes, size_limit=size_limit)
            self.check(base, allowed=(SUCCESS, SIZE_LIMIT_EXCEEDED))
            return _entries(conn.response)
        found: list[dict[str, Any]] = []
        cookie: bytes | None = None
        while True:
            conn.search(
                base,
                search_filter,
                attributes=attributes,
                paged_size=self._shared.config.page_size,
                paged_cookie=cookie,
            )
            self.check(base)
            found += _entries(conn.response)
            control = (conn.result.get("controls") or {}).get(_PAGED_RESULTS) or {}
            cookie = (control.get("value") or {}).get("cookie")
            if not cookie:
                return found

    def read(self, dn: str, attributes: list[str]) -> dict[str, Any]:
        """The entry at ``dn``; NotFoundError when there is none."""
        self._conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=attributes)
        self.check(dn)
        entries = _entries(self._conn.response)
        if not entries:
            raise NotFoundError(f"no directory entry {dn!r}")
        return entries[0]

    def replace(self, dn: str, attribute: str, value: str) -> None:
        self._conn.modify(dn, {attribute: [(ldap3.MODIFY_REPLACE, [value])]})
        self.check(dn)

    def check(self, dn: str, allowed: tuple[int, ...] = (SUCCESS,)) -> None:
        result = self._conn.result or {}
        code = result.get("result")
        if code in allowed:
            return
        if code == NO_SUCH_OBJECT:
            raise NotFoundError(f"no directory entry {dn!r}")
        raise self._shared.error(f"directory refused the operation on {dn!r}", result)


class SharedConnection:
    """One bound connection to the directory, opened on first use and reused."""

    def __init__(self, config: ADConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._conn: ldap3.Connection | None = None

    def run(self, op: Callable[[Ldap], T], what: str) -> T:
        """Run ``op`` on the shared connection (blocking: call it from a worker thread)."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._conn or self._connect()
                try:
                    return op(Ldap(conn, self))
                except ldap_errors.LDAPCommunicationError as exc:
                    self._drop()  # the server went away or closed an idle connection
                    if attempt == 2:
                        raise self.error(f"{what} failed", exc) from exc
                except ldap_errors.LDAPException as exc:
                    self._drop()
                    raise self.error(f"{what} failed", exc) from exc
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._drop()

    def error(self, what: str, cause: object) -> IntegrationError:
        """An IntegrationError naming the server, never the password."""
        if isinstance(cause, dict):
            detail = " ".join(str(cause.get(key) or "") for key in ("description", "message"))
        else:
            detail = str(cause) or type(cause).__name__
        message = f"Active Directory at {self.config.url}: {what}: {detail.strip()}"
        secret = self.config.password.get_secret_value()
        if secret:
            message = message.replace(secret, "**********")
        return IntegrationError(message)

    def _connect(self) -> ldap3.Connection:
        cfg = self.config
        server = ldap3.Server(
            cfg.host,
            port=cfg.port,
            use_ssl=cfg.scheme == "ldaps",
            tls=VerifiedTls(cfg),
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
                raise self.error("StartTLS failed", conn.result)
            if not conn.bind():
                raise self.error(f"bind as {cfg.bind_dn!r} failed", conn.result)
        except (ldap_errors.LDAPException, OSError) as exc:
            self._unbind(conn)
            raise self._connect_error(exc) from exc
        except IntegrationError:
            self._unbind(conn)
            raise
        finally:
            conn.password = None  # ldap3 keeps it, and shows it in reprs
        self._conn = conn
        return conn

    def _connect_error(self, exc: BaseException) -> IntegrationError:
        reason = _SSL_REASON.search(str(exc))
        if reason is None and not isinstance(exc, ssl.SSLError):
            return self.error(f"cannot connect as {self.config.bind_dn!r}", exc)
        cfg = self.config
        trust = f"ca_file {cfg.ca_file}" if cfg.ca_file else "the system CAs"
        return self.error(
            f"TLS handshake with {cfg.host}:{cfg.port} failed",
            f"{reason.group(0).strip() if reason else exc}; is the DC's certificate signed "
            f"by a CA in {trust}, and issued for {cfg.host!r}?",
        )

    def _drop(self) -> None:
        if self._conn is not None:
            self._unbind(self._conn)
            self._conn = None

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


def _entries(response: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [normalise(item) for item in response or [] if item.get("type") == "searchResEntry"]
