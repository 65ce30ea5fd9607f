"""Block Kit pieces every Fido message is built from, cut to Slack's limits: sections,
context lines, buttons carrying a value model, and confirm dialogs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.slack.ids import ActionId, ValueModel, action_id_for
from bot.slack.text import (
    BUTTON_MAX,
    CONFIRM_TEXT_MAX,
    CONTEXT_MAX,
    FIELD_MAX,
    SECTION_MAX,
    one_line,
    truncate,
)


def section(text: str, fields: Sequence[str] = (), **kw: Any) -> SectionBlock:
    return SectionBlock(
        text=MarkdownTextObject(text=truncate(text, SECTION_MAX)),
        fields=[MarkdownTextObject(text=truncate(f, FIELD_MAX)) for f in fields[:10]] or None,
        **kw,
    )


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=truncate(text, CONTEXT_MAX))])


def button(
    kind: ActionId, text: str, value: ValueModel, discriminator: str, **kw: Any
) -> ButtonElement:
    """A ``kind`` button, unique in its message by ``discriminator``, carrying ``value``."""
    return ButtonElement(
        text=PlainTextObject(text=truncate(one_line(text), BUTTON_MAX), emoji=True),
        action_id=action_id_for(kind, discriminator),
        value=value.dump(),
        **kw,
    )


def confirm(title: str, text: str, yes: str, style: str = "danger") -> ConfirmObject:
    return ConfirmObject(
        title=PlainTextObject(text=title),
        text=PlainTextObject(text=truncate(one_line(text), CONFIRM_TEXT_MAX)),
        confirm=PlainTextObject(text=yes),
        deny=PlainTextObject(text="Cancel"),
        style=style,
    )
