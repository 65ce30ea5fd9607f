"""The ``imap`` source: read alert e-mails from a mailbox.

Some detectors can only send mail (an old appliance, a SaaS with "e-mail notification"
as its one integration). This source reads them from an IMAP folder::

    sources:
      edr_mail:
        type: imap
        detector: generic
        options:
          host: imap.corp.example
          tls: ssl                    # ssl (993) | starttls (143) | none (143, in clear)
          username: fido-alerts@corp.example
          password_env: FIDO_IMAP_PASSWORD
          folder: INBOX
          processed_folder: Fido/Processed      # created when missing
          rules:
            - sender: '@edr\\.corp\\.example>?$'
              subject: '^\\[(?P<severity>\\w+)\\] (?P<title>.+)$'
              body: 'User: (?P<user>\\S+)\\s+Host: (?P<host>\\S+)'
            - sender: 'alerts@saas\\.example'
              attachment_json: true

Every unseen message after the cursor is read (without marking it seen) and given to the
first rule that matches it (see ``imap_rules``: the sender, subject and body regexes; a
JSON object of the named groups, or the JSON attachments). Mail that matches no rule, or
is larger than ``max_message_bytes``, stays where it is, and is logged. The From header is only as
trustworthy as the mail server's checks (SPF/DKIM/DMARC) make it.

The cursor keeps the folder's UIDVALIDITY and the last UID read. Matched mail is moved to
``processed_folder`` (UID MOVE, or COPY + \\Deleted + EXPUNGE where MOVE is missing) only
after the events and the cursor are committed; the cursor also lists those UIDs, so if the
move did not happen (a crash, a lost connection) the next fetch does it. Mail is never
lost, and never read twice. Folder names are sent as quoted modified UTF-7 and search
criteria are numbers, so nothing from the policy or a message reaches the protocol raw.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import logging
import re
import ssl
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from integrations.sources.imap_rules import MailRule, RuleOptions, describe, payloads_for
from pipeline.errors import IntegrationError
from pipeline.plugins import Batch, Context, EnvName, sources

log = logging.getLogger(__name__)

_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def mailbox_name(name: str) -> str:
    """``name`` as an IMAP quoted string in modified UTF-7 (RFC 3501 §5.1.3), so spaces,
    quotes, non-ASCII letters and even control characters are sent safely."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    quoted = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


class _Session:
    """One logged-in IMAP connection (blocking: used from a worker thread)."""

    def __init__(self, source: IMAPSource) -> None:
        self.source, self.where = source, f"imap {source.name} ({source.host}:{source.port})"
        self.conn: imaplib.IMAP4 | None = None
        try:
            if source.tls == "ssl":
                self.conn = imaplib.IMAP4_SSL(
                    source.host,
                    source.port,
                    ssl_context=source.ssl_context(),
                    timeout=source.timeout,
                )
            else:
                self.conn = imaplib.IMAP4(source.host, source.port, timeout=source.timeout)
            if source.tls == "starttls":
                if "STARTTLS" not in self.conn.capabilities:
                    raise IntegrationError(f"{self.where}: the server offers no STARTTLS")
                self.conn.starttls(ssl_context=source.ssl_context())
            user, password = source.username, source.password.get_secret_value()
            if (user + password).isascii():
                self.conn.login(mailbox_name(user), password)
            else:  # LOGIN is ASCII only; AUTHENTICATE PLAIN carries UTF-8
                self.conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            lines = self.ok(self.conn.capability(), "CAPABILITY")
            self.caps = {c.upper() for line in lines if line for c in line.decode().split()}
        except (IntegrationError, imaplib.IMAP4.error, OSError) as exc:
            self.close()
            raise self.failure("logging in", exc) from None

    def failure(self, what: str, exc: BaseException) -> IntegrationError:
        if isinstance(exc, IntegrationError):
            return exc
        text = str(exc).replace(self.source.password.get_secret_value(), "***")
        return IntegrationError(f"{self.where}: {what} failed: {type(exc).__name__}: {text}")

    def ok(self, answer: tuple[str, list[Any]], what: str) -> list[Any]:
        status, data = answer
        if status != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise IntegrationError(f"{self.where}: {what} refused: {detail[:200]}")
        return data

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
            self.conn = None

    @property
    def imap(self) -> imaplib.IMAP4:
        assert self.conn is not None
        return self.conn

    def select(self, folder: str) -> int:
        """Open ``folder`` for reading and moving; its UIDVALIDITY."""
        self.ok(self.imap.select(mailbox_name(folder)), f"SELECT {folder}")
        try:
            return int(self.imap.response("UIDVALIDITY")[1][0])
        except (TypeError, ValueError, IndexError):
            raise IntegrationError(f"{self.where}: {folder} has no UIDVALIDITY") from None

    def ensure_folder(self, folder: str) -> None:
        if not any(self.ok(self.imap.list('""', mailbox_name(folder)), "LIST")):
            self.ok(self.imap.create(mailbox_name(folder)), f"CREATE {folder}")
            self.imap.subscribe(mailbox_name(folder))
            log.info("%s: created folder %r", self.where, folder)

    def search(self, *criteria: str) -> list[int]:
        found = self.ok(self.imap.uid("SEARCH", *criteria), "UID SEARCH")
        return sorted({int(n) for line in found if line for n in line.split()})

    def fetch(self, uids: list[int], item: str) -> dict[int, tuple[bytes, bytes]]:
        """``item`` for each UID: (the FETCH line, the literal that followed it)."""
        found: dict[int, tuple[bytes, bytes]] = {}
        for entry in self.ok(self.imap.uid("FETCH", uid_set(uids), item), "UID FETCH"):
            line, literal = entry if isinstance(entry, tuple) else (entry, b"")
            match = _UID.search(line if isinstance(line, bytes) else b"")
            if match:
                found[int(match.group(1))] = (line, literal)
        return found

    def move(self, uids: list[int], folder: str) -> None:
        target, where = mailbox_name(folder), uid_set(uids)
        if "MOVE" in self.caps:
            self.ok(self.imap.uid("MOVE", where, target), f"UID MOVE to {folder}")
            return
        self.ok(self.imap.uid("COPY", where, target), f"UID COPY to {folder}")
        self.ok(self.imap.uid("STORE", where, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
        if "UIDPLUS" in self.caps:
            self.ok(self.imap.uid("EXPUNGE", where), "UID EXPUNGE")
        else:  # removes every \Deleted message in the folder, the only way without UIDPLUS
            self.ok(self.imap.expunge(), "EXPUNGE")


def uid_set(uids: list[int]) -> str:
    return ",".join(str(int(u)) for u in sorted(set(uids)))


def _size(line: bytes) -> int:
    match = _SIZE.search(line)
    return int(match.group(1)) if match else 0


class Options(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "host": "imap.example.com",
                    "username": "fido",
                    "password_env": "FIDO_IMAP_PASSWORD",
                    "rules": [
                        {
                            "sender": "alerts@scanner\\.example\\.com",
                            "subject": "^\\[(?P<severity>\\w+)\\] (?P<title>.+)$",
                        }
                    ],
                }
            ]
        },
    )

    host: str = Field(min_length=1, pattern=r"\S")
    port: int | None = Field(default=None, ge=1, le=65535, strict=True)  # 993 / 143
    tls: Literal["ssl", "starttls", "none"] = "ssl"
    verify_tls: bool = True  # false: labs only
    ca_file: str | None = None  # PEM bundle of the server's CA (default: the system's)
    username: str = Field(min_length=1, pattern=r"\S")
    password_env: EnvName  # the variable holding the mailbox password
    folder: str = Field(default="INBOX", min_length=1, pattern=r"\S")
    processed_folder: str = Field(default="Fido/Processed", min_length=1)  # created if missing
    rules: list[RuleOptions] = Field(min_length=1)  # the first that matches a message wins
    batch_size: int = Field(default=50, ge=1, strict=True)  # messages per fetch
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1, strict=True)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _two_folders(self) -> Options:
        if self.processed_folder == self.folder:
            raise ValueError("processed_folder must be another folder than folder")
        return self


IMAPOptions = Options  # the name the methods are annotated with


@sources.register("imap")
class IMAPSource:
    """Reads alert mail from an IMAP folder; see the module docstring."""

    Options = Options

    def __init__(
        self,
        name: str,
        detector: str,
        *,
        host: str,
        username: str,
        password: SecretStr,
        rules: list[MailRule],
        port: int | None = None,
        tls: str = "ssl",
        verify_tls: bool = True,
        ca_file: str | None = None,
        folder: str = "INBOX",
        processed_folder: str = "Fido/Processed",
        batch_size: int = 50,
        max_message_bytes: int = 10 * 1024 * 1024,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.name, self.detector = name, detector
        self.host, self.tls, self.verify_tls, self.ca_file = host, tls, bool(verify_tls), ca_file
        self.port = port or (993 if tls == "ssl" else 143)
        self.username, self.password, self.rules = username, password, rules
        self.folder, self.processed_folder = folder, processed_folder
        self.batch_size, self.max_message_bytes = batch_size, max_message_bytes
        self.timeout = float(timeout_seconds)
        if tls == "none":
            log.warning("sources.%s: IMAP without TLS sends the password in clear", name)

    @classmethod
    def build(cls, options: IMAPOptions, context: Context) -> IMAPSource:
        return cls(
            context.name,
            context.source_detector().name,
            password=SecretStr(context.secret(options.password_env)),
            rules=[MailRule.from_options(rule) for rule in options.rules],
            **options.model_dump(exclude={"password_env", "rules"}),
        )

    def __repr__(self) -> str:
        return f"IMAPSource({self.name!r}, {self.username!r}@{self.host}:{self.port})"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify_tls:
            log.warning("sources.%s: not verifying the IMAP server's certificate", self.name)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context

    async def fetch(self, cursor: dict[str, Any]) -> Batch:
        return await asyncio.to_thread(self._fetch, cursor)

    def _fetch(self, cursor: dict[str, Any]) -> Batch:
        session = _Session(self)
        try:
            return self._read(session, cursor)
        except (IntegrationError, imaplib.IMAP4.error, OSError) as exc:
            raise session.failure("reading mail", exc) from None
        finally:
            session.close()

    def _read(self, session: _Session, cursor: dict[str, Any]) -> Batch:
        session.ensure_folder(self.processed_folder)  # one LIST; someone may have deleted it
        validity = session.select(self.folder)
        last_uid = int(cursor.get("last_uid") or 0)
        if cursor and cursor.get("uidvalidity") != validity:
            log.warning(
                "%s: %s was renumbered (UIDVALIDITY), reading it again", self.name, self.folder
            )
            last_uid = 0
        elif cursor.get("to_move"):  # moves of a committed batch that did not happen
            left = session.search("UID", uid_set(cursor["to_move"]))
            if left:
                session.move(left, self.processed_folder)
        unseen = [u for u in session.search("UNSEEN", "UID", f"{last_uid + 1}:*") if u > last_uid]
        uids = unseen[: self.batch_size]
        sizes = session.fetch(uids, "(RFC822.SIZE)") if uids else {}
        too_big = {u for u, (line, _) in sizes.items() if _size(line) > self.max_message_bytes}
        wanted = [u for u in uids if u not in too_big]
        bodies = session.fetch(wanted, "(BODY.PEEK[])") if wanted else {}
        payloads: list[bytes] = []
        matched: list[int] = []
        for uid in uids:
            raw = bodies.get(uid, (b"", b""))[1]
            found = self._payloads(uid, raw) if raw else []
            payloads.extend(found)
            if found:
                matched.append(uid)
            else:
                why = "is too large" if uid in too_big else f"({describe(raw)}) matches no rule"
                log.info("%s: message %d %s, left in place", self.name, uid, why)
        last = max(uids, default=last_uid)
        new_cursor = {"uidvalidity": validity, "last_uid": last, "to_move": matched}

        async def move() -> None:
            await asyncio.to_thread(self._move, validity, matched)

        after = move if matched else None
        return Batch(payloads, new_cursor, more=len(unseen) > len(uids), on_committed=after)

    def _payloads(self, uid: int, raw: bytes) -> list[bytes]:
        """One message's payloads; a message that breaks the parser is left in place and
        logged, never allowed to stop the mail behind it."""
        try:
            return payloads_for(raw, self.rules)
        except Exception as exc:  # isolate one bad message (STYLE 12)
            log.warning("%s: message %d cannot be read (%s)", self.name, uid, type(exc).__name__)
            return []

    def _move(self, validity: int, uids: list[int]) -> None:
        """Move committed mail to the processed folder; a failure is only logged, as the
        next fetch moves what is left (its UIDs are in the cursor)."""
        try:
            session = _Session(self)
        except IntegrationError as exc:
            log.warning("%s: moving processed mail failed, will retry: %s", self.name, exc)
            return
        try:
            if session.select(self.folder) == validity:
                session.move(uids, self.processed_folder)
        except (IntegrationError, imaplib.IMAP4.error, OSError) as exc:
            log.warning("%s: moving processed mail failed, will retry: %s", self.name, exc)
        finally:
            session.close()
