"""``/fido``: the analysts' command. Acknowledge, parse, call the pipeline, answer
ephemerally. A bad command gets an ephemeral explanation, never silence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.blocks import card_text, incident_card
from bot.slack.listeners.errors import answers_errors
from bot.slack.lookup_blocks import lookup_blocks
from pipeline.errors import InputError
from pipeline.investigate import investigate
from pipeline.worker import Pipeline

USAGE = "*Fido commands*\n• `/fido incident N`: show incident N\n• `/fido help`: this help"


def unescape(word: str) -> str:
    """Undo Slack's formatting of command text: ``<http://x|x>`` → ``http://x``, ``&amp;``."""
    if word.startswith("<") and word.endswith(">"):
        word = word[1:-1].split("|", 1)[0]
        word = word.removeprefix("mailto:")
    return word.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse(text: str) -> tuple[str, list[str]]:
    words = [unescape(w) for w in text.split()]
    if not words:
        return "help", []
    return words[0].lower(), words[1:]


def register(app: AsyncApp, pipeline: Pipeline, labels: Mapping[str, str]) -> None:
    @app.command("/fido")
    @answers_errors
    async def fido(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        verb, args = parse(command.get("text") or "")
        if verb == "help":
            await respond(text=USAGE, response_type="ephemeral")
        elif verb == "incident":
            if len(args) != 1 or not args[0].lstrip("#").isdigit():
                raise InputError("usage: `/fido incident N`, where N is an incident number")
            found = await pipeline.incident(int(args[0].lstrip("#")))
            if found is None:
                raise InputError(f"there is no incident {args[0]}")
            incident, actions = found
            blocks = incident_card(incident, actions, labels=labels)
            await respond(
                text=card_text(incident),
                blocks=[b.to_dict() for b in blocks],
                response_type="ephemeral",
            )
        elif verb == "lookup":
            if len(args) != 2:
                raise InputError("usage: `/fido lookup user|host|ip|hash|domain|url VALUE`")
            report = await investigate(pipeline, kind=args[0], value=args[1])
            await respond(
                text=f"Lookup of {report.kind} {report.value}",
                blocks=[b.to_dict() for b in lookup_blocks(report)],
                response_type="ephemeral",
            )
        else:
            raise InputError(f"unknown command `{verb[:40]}`.\n{USAGE}")
