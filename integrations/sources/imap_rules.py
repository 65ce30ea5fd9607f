"""Which e-mails are alerts, and what they say: the rules of the ``imap`` source.

A rule names the sender (a regex on the From header, case-insensitive), and optionally a
subject and a body regex that must match too. What a matching rule makes of the message:

- with named groups (or without ``attachment_json``): one JSON object for the ``generic``
  detector, the named groups plus ``title`` (the subject), ``occurred_at`` (the Date
  header) and ``id`` (the Message-ID) unless a group captured them;
- with ``attachment_json``: each JSON attachment, as it is.

Parsing is the standard library's, with the modern ``email.policy.default`` (RFC 2047
headers decoded); a body in HTML is read with its tags removed. Nothing here touches the
network, so it is tested without a server.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _regex(value: str | None) -> str | None:
    if value is not None:
        if not value:
            raise ValueError("must be a non-empty regex")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regex: {exc}") from None
    return value


Regex = Annotated[str | None, AfterValidator(_regex)]


class RuleOptions(BaseModel):
    """One rule as the policy gives it (``sources.NAME.options.rules``)."""

    model_config = ConfigDict(extra="forbid")

    sender: Annotated[str, AfterValidator(_regex)]  # searched in From, ignoring case
    subject: Regex = None
    body: Regex = None  # multi-line: ^ and $ match at each line
    attachment_json: bool = Field(default=False, strict=True)


@dataclass(frozen=True)
class MailRule:
    """Which mail an alert is, and how to read it; see the module docstring."""

    sender: re.Pattern[str]
    subject: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None
    attachment_json: bool = False

    @classmethod
    def from_options(cls, rule: RuleOptions) -> MailRule:
        return cls(
            sender=re.compile(rule.sender, re.IGNORECASE),
            subject=re.compile(rule.subject) if rule.subject is not None else None,
            body=re.compile(rule.body, re.MULTILINE) if rule.body is not None else None,
            attachment_json=rule.attachment_json,
        )

    def payloads(self, message: EmailMessage) -> list[bytes] | None:
        """The payloads this rule makes of ``message``, or None when it does not match."""
        sender, subject = _header(message, "From"), _header(message, "Subject")
        if not self.sender.search(sender):
            return None
        fields: dict[str, Any] = {}
        for pattern, text in ((self.subject, subject), (self.body, None)):
            if pattern is None:
                continue
            match = pattern.search(_body_text(message) if text is None else text)
            if match is None:
                return None
            fields.update({k: v for k, v in match.groupdict().items() if v is not None})
        found: list[bytes] = []
        named = any(p is not None and p.groupindex for p in (self.subject, self.body))
        if named or not self.attachment_json:
            fields.setdefault("title", subject.strip() or f"E-mail alert from {sender}")
            occurred = _date(message)
            if occurred:
                fields.setdefault("occurred_at", occurred)
            message_id = _header(message, "Message-ID").strip().strip("<>").strip()
            if message_id:
                fields.setdefault("id", message_id)
            found.append(json.dumps(fields, ensure_ascii=False).encode())
        if self.attachment_json:
            found.extend(_json_attachments(message))
        return found or None


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, "") or "")
    except (ValueError, TypeError, IndexError, MessageError):  # a header too broken to decode
        return ""


def _date(message: EmailMessage) -> str | None:
    try:
        when = parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    return when.isoformat() if when.tzinfo else when.isoformat() + "+00:00"


def _body_text(message: EmailMessage) -> str:
    """The plain-text body, or the HTML one with its tags removed."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        text = str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if part.get_content_subtype() == "html":
        text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    return text


def _json_attachments(message: EmailMessage) -> list[bytes]:
    found = []
    for part in message.iter_attachments():
        filename = (part.get_filename() or "").lower()
        if part.get_content_type() == "application/json" or filename.endswith(".json"):
            content = part.get_payload(decode=True)
            if isinstance(content, bytes) and content.strip():
                found.append(content)
    return found


def payloads_for(raw: bytes, rules: list[MailRule]) -> list[bytes]:
    """What the first matching rule makes of a raw message; [] when none matches."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    for rule in rules:
        found = rule.payloads(message)
        if found is not None:
            return found
    return []


def describe(raw: bytes) -> str:
    """Sender and subject, for the log line about mail no rule wanted."""
    try:
        message = message_from_bytes(raw, policy=policy.default)
    except Exception:  # only for a log line: never let it fail the fetch
        return "unreadable"
    assert isinstance(message, EmailMessage)
    sender, subject = _header(message, "From")[:120], _header(message, "Subject")[:120]
    return f"from {sender!r}, subject {subject!r}"
