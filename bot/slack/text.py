"""Slack text: mrkdwn escaping, Slack's length limits, mentions and dates, and blocks read
back as plain text for a terminal.

Slack parses ``<…>`` in mrkdwn as mentions (``<@U1>``, ``<!channel>``), links and dates, so
every value that comes from outside (an alert, a directory) goes through :func:`escape`
before it is put in mrkdwn. plain_text (headers, buttons, dialogs) is never parsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    SectionBlock,
)

# Slack's limits (characters, blocks).
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
CONTEXT_MAX = 2000
BUTTON_MAX = 75
CONFIRM_TEXT_MAX = 300
MAX_BLOCKS = 50
VALUE_MAX = 200  # our own cap for one value inside a longer text

_SLACK_USER = re.compile(r"\A[UW][A-Z0-9]{2,}\Z")
_ANGLE = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def escape(text: object) -> str:
    """``text`` made inert for mrkdwn: Slack's three control characters, HTML-escaped."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    return " ".join(text.split())


def code(value: object) -> str:
    """A value from outside as escaped inline code (plain, if it holds a backtick)."""
    text = escape(truncate(str(value), VALUE_MAX))
    return text if "`" in text else f"`{text}`"


def who(user: str | None) -> str:
    """A Slack user id as a mention; Fido itself and anything else as inert text."""
    if not user:
        return "someone"
    if user.lower() == "fido":
        return "Fido"
    return f"<@{user}>" if _SLACK_USER.match(user) else escape(truncate(user, 64))


def slack_date(when: datetime) -> str:
    """Slack date formatting, shown in the reader's time zone, with a UTC fallback.

    Naive datetimes (SQLite hands them back) are taken as UTC.
    """
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def plain(mrkdwn: str) -> str:
    """mrkdwn made readable as plain text: mentions, links and dates resolved, unescaped."""

    def resolve(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("!date^", "@", "#")):
            return label or target
        if target.startswith("!"):
            return "@" + target[1:].split("^")[0]
        return f"{label} ({target})" if label else target

    text = _ANGLE.sub(resolve, mrkdwn)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _texts(objects: Iterable[Any]) -> list[str]:
    return [plain(getattr(o, "text", None) or "") for o in objects if o is not None]


def render_text(blocks: Sequence[Block | dict[str, Any]]) -> str:
    """Blocks as plain text for a terminal; buttons read ``[ Approve: … ]  [ Deny ]``."""
    lines: list[str] = []
    for item in blocks:
        block = Block.parse(item) if isinstance(item, dict) else item
        if isinstance(block, HeaderBlock):
            text = block.text.text if block.text else ""
            lines += [text, "═" * min(len(text), 60)]
        elif isinstance(block, SectionBlock):
            lines += _texts([block.text])
            lines += ["    " + t.replace("\n", " ") for t in _texts(block.fields or [])]
        elif isinstance(block, ContextBlock):
            lines += ["  " + t.replace("\n", "\n  ") for t in _texts(block.elements)]
        elif isinstance(block, DividerBlock):
            lines.append("─" * 40)
        elif isinstance(block, ActionsBlock):
            labels = _texts(getattr(e, "text", None) for e in block.elements)
            lines.append("  ".join(f"[ {label} ]" for label in labels))
    return "\n".join(lines)
