"""``/fido``: the analysts' command. Acknowledge, parse, call the pipeline, answer
ephemerally. A bad command gets an ephemeral explanation, never silence.

``close``, ``suppress``, ``suppressions`` and ``unsuppress`` are in
:mod:`bot.slack.listeners.lifecycle_commands`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.slack.blocks import card_text, incident_card
from bot.slack.listeners import control_commands as control
from bot.slack.listeners import lifecycle_commands as lifecycle
from bot.slack.listeners.errors import answers_errors
from bot.slack.listeners.lifecycle_commands import Reply, number
from bot.slack.lookup_blocks import lookup_blocks
from pipeline.engine import Engine
from pipeline.errors import InputError
from pipeline.investigate import investigate
from pipeline.suppress import from_incident

USAGE = "\n".join(
    [
        "*Fido commands*",
        "• `/fido help`: this help",
        "• `/fido lookup user|host|ip|hash|domain|url VALUE`: every source and Fido's "
        "history on one value",
        "• `/fido incident N`: incident N with every point of its score, its timeline and actions",
        "• `/fido close N tp|fp|benign [reason…]`: close incident N with a verdict",
        "• `/fido suppress N [DAYS] [reason…]`: silence alerts like incident N's "
        "(for the policy's `suppression_days` unless DAYS is given)",
        "• `/fido suppressions`: every suppression in force, with its hits",
        "• `/fido unsuppress ID`: remove a suppression made in Slack",
        "• `/fido pause [reason…]`: stop automatic action everywhere (approvers)",
        "• `/fido resume [RESPONDER]`: lift the pause, or reset a responder's hourly cap",
        "• `/fido extend ACTION HOURS`: keep a time-boxed containment longer (approvers)",
    ]
)
INCIDENT_USAGE = "usage: `/fido incident N`, where N is an incident number"


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


async def show_incident(engine: Engine, args: list[str], labels: Mapping[str, str]) -> Reply:
    """``incident N``: the card with every point of the score and the timeline."""
    if len(args) != 1:
        raise InputError(INCIDENT_USAGE)
    incident_id = number(args[0], INCIDENT_USAGE)
    found = await engine.incidents.get(incident_id)
    if found is None:
        raise InputError(f"there is no incident {incident_id}")
    incident, actions = found
    like = from_incident(incident)
    suppression = next(
        (s.key for s in await engine.incidents.suppressions() if s.match == like), None
    )
    blocks = incident_card(
        incident,
        actions,
        labels=labels,
        full=True,
        events=await engine.incidents.events_of(incident_id),
        suppression_days=engine.policy.suppression_days,
        suppression=suppression,
    )
    return Reply(card_text(incident), [b.to_dict() for b in blocks])


async def lookup(engine: Engine, args: list[str]) -> Reply:
    if len(args) != 2:
        raise InputError("usage: `/fido lookup user|host|ip|hash|domain|url VALUE`")
    report = await investigate(
        db=engine.db,
        policy=engine.policy,
        enrichers=engine.enrichers,
        kind=args[0],
        value=args[1],
    )
    blocks = [b.to_dict() for b in lookup_blocks(report)]
    return Reply(f"Lookup of {report.kind} {report.value}", blocks)


async def answer(
    engine: Engine, labels: Mapping[str, str], verb: str, args: list[str], *, actor: str
) -> Reply:
    incidents = engine.incidents
    if verb == "help":
        return Reply(USAGE)
    if verb == "incident":
        return await show_incident(engine, args, labels)
    if verb == "lookup":
        return await lookup(engine, args)
    if verb == "close":
        return await lifecycle.close(incidents, args, actor=actor)
    if verb == "suppress":
        days = engine.policy.suppression_days
        return await lifecycle.suppress(incidents, args, actor=actor, default_days=days)
    if verb == "suppressions":
        return await lifecycle.suppressions(incidents, args)
    if verb == "unsuppress":
        return await lifecycle.unsuppress(incidents, args, actor=actor)
    if verb == "pause":
        return await control.pause(incidents, args, actor=actor)
    if verb == "resume":
        return await control.resume(incidents, args, actor=actor)
    if verb == "extend":
        return await control.extend(incidents, args, actor=actor)
    raise InputError(f"unknown command `{verb[:40]}`.\n{USAGE}")


def register(app: AsyncApp, engine: Engine, labels: Mapping[str, str]) -> None:
    @app.command("/fido")
    @answers_errors
    async def fido(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        verb, args = parse(command.get("text") or "")
        reply = await answer(engine, labels, verb, args, actor=command["user_id"])
        await respond(text=reply.text, blocks=reply.blocks or None, response_type="ephemeral")
