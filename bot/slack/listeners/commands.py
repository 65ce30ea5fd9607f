"""``/fido``: the analysts' command. Acknowledge, parse, call the pipeline, answer
ephemerally. A mistake gets the subcommand's usage line, never silence.

One table, :data:`COMMANDS`, both dispatches the subcommands and writes ``/fido help``
(and ``manifest.yml``'s usage hint is checked against it), so the help cannot drift from
what works. A slow subcommand (``lookup``, ``stats``) is acknowledged at once with a
"working on it" line, which its answer replaces: Slack wants the acknowledgement within
three seconds, the answer may take longer.

``close``, ``suppress``, ``suppressions`` and ``unsuppress`` are in
:mod:`bot.slack.listeners.lifecycle_commands`; ``pause``, ``resume`` and ``extend`` in
:mod:`bot.slack.listeners.control_commands`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.context.async_context import AsyncBoltContext

from bot.slack.blocks import card_text
from bot.slack.detail_blocks import incident_detail, incidents_blocks, stats_blocks, stats_text
from bot.slack.listeners import control_commands as control
from bot.slack.listeners import lifecycle_commands as lifecycle
from bot.slack.listeners.errors import answers_errors
from bot.slack.listeners.lifecycle_commands import Reply, number
from bot.slack.lookup_blocks import lookup_blocks
from pipeline import reads, stats
from pipeline.engine import Engine
from pipeline.errors import InputError
from pipeline.investigate import investigate
from pipeline.suppress import from_incident

INCIDENTS_LIMIT = 20


@dataclass(frozen=True)
class Ask:
    """One ``/fido`` request: the words after the subcommand, and who asked."""

    engine: Engine
    labels: Mapping[str, str]
    args: list[str]
    actor: str


@dataclass(frozen=True)
class Subcommand:
    usage: str  # after ``/fido``: the name, then its arguments
    help: str
    run: Callable[[Ask], Awaitable[Reply]]
    slow: bool = False  # acknowledged with a "working on it" line first

    @property
    def name(self) -> str:
        return self.usage.split()[0]

    @property
    def usage_line(self) -> str:
        return f"usage: `/fido {self.usage}`"


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


async def show_help(ask: Ask) -> Reply:
    if ask.args:
        raise InputError(COMMANDS["help"].usage_line)
    return Reply(USAGE)


async def show_incident(ask: Ask) -> Reply:
    """``incident N``: the card with every point of the score and the whole timeline."""
    usage = COMMANDS["incident"].usage_line + ", where N is an incident number"
    if len(ask.args) != 1:
        raise InputError(usage)
    incident_id = number(ask.args[0], usage)
    engine = ask.engine
    found = await engine.incidents.get(incident_id)
    if found is None:
        raise InputError(f"there is no incident {incident_id}")
    incident, actions = found
    like = from_incident(incident)
    suppression = next(
        (s.key for s in await engine.incidents.suppressions() if s.match == like), None
    )
    blocks = incident_detail(
        incident,
        actions,
        await reads.timeline(engine.db, incident_id),
        labels=ask.labels,
        reversible=engine.incidents.reversible(),
        suppression_days=engine.policy.suppression_days,
        suppression=suppression,
    )
    return Reply(card_text(incident), [b.to_dict() for b in blocks])


async def list_incidents(ask: Ask) -> Reply:
    """``incidents [open|mine|today]``"""
    if len(ask.args) > 1 or (ask.args and ask.args[0].lower() not in set(reads.Which)):
        raise InputError(COMMANDS["incidents"].usage_line)
    which = reads.Which(ask.args[0].lower()) if ask.args else reads.Which.open
    found = await reads.incidents(
        ask.engine.db,
        which=which,
        now=ask.engine.incidents.now(),
        actor=ask.actor,
        limit=INCIDENTS_LIMIT,
    )
    blocks = incidents_blocks(which, found, limit=INCIDENTS_LIMIT)
    return Reply(f"{len(found)} incidents ({which.value})", [b.to_dict() for b in blocks])


async def show_stats(ask: Ask) -> Reply:
    """``stats [7d]``: any window from a minute to a year (``90m``, ``24h``, ``30d``, ``2w``)."""
    from bot.tools import duration

    if len(ask.args) > 1:
        raise InputError(COMMANDS["stats"].usage_line)
    try:
        window = duration(ask.args[0]) if ask.args else stats.DEFAULT_WINDOW
    except InputError as exc:
        raise InputError(f"{exc}\n{COMMANDS['stats'].usage_line}") from None
    if window > stats.MAX_WINDOW:
        raise InputError(f"at most a year: {COMMANDS['stats'].usage_line}")
    found = await stats.stats(ask.engine.db, now=ask.engine.incidents.now(), window=window)
    return Reply(stats_text(found), [b.to_dict() for b in stats_blocks(found)])


async def lookup(ask: Ask) -> Reply:
    if len(ask.args) != 2:
        raise InputError(COMMANDS["lookup"].usage_line)
    report = await investigate(
        db=ask.engine.db,
        policy=ask.engine.policy,
        enrichers=ask.engine.enrichers,
        kind=ask.args[0],
        value=ask.args[1],
    )
    blocks = [b.to_dict() for b in lookup_blocks(report)]
    return Reply(f"Lookup of {report.kind} {report.value}", blocks)


def _lifecycle(name: str) -> Callable[[Ask], Awaitable[Reply]]:
    async def run(ask: Ask) -> Reply:
        incidents = ask.engine.incidents
        if name == "suppress":
            days = ask.engine.policy.suppression_days
            return await lifecycle.suppress(incidents, ask.args, actor=ask.actor, default_days=days)
        if name == "suppressions":
            return await lifecycle.suppressions(incidents, ask.args)
        handler = {
            "close": lifecycle.close,
            "unsuppress": lifecycle.unsuppress,
            "pause": control.pause,
            "resume": control.resume,
            "extend": control.extend,
        }[name]
        return await handler(incidents, ask.args, actor=ask.actor)

    return run


COMMANDS: dict[str, Subcommand] = {
    c.name: c
    for c in [
        Subcommand("help", "this help", show_help),
        Subcommand(
            "lookup user|host|ip|hash|domain|url VALUE",
            "every source and Fido's history on one value",
            lookup,
            slow=True,
        ),
        Subcommand(
            "incident N",
            "incident N with every point of its score and its timeline of events, actions "
            "and clicks",
            show_incident,
        ),
        Subcommand(
            "incidents [open|mine|today]",
            "open incidents by score (default), the ones you acted on, or the last 24 hours'",
            list_incidents,
        ),
        Subcommand(
            "stats [7d]",
            "alerts, incidents, actions, response times and auto-action precision over a "
            "window (7 days unless given: 24h, 30d, 2w…)",
            show_stats,
            slow=True,
        ),
        Subcommand(
            "close N tp|fp|benign [reason…]",
            "close incident N with a verdict",
            _lifecycle("close"),
        ),
        Subcommand(
            "suppress N [DAYS] [reason…]",
            "silence alerts like incident N's (for the policy's `suppression_days` unless "
            "DAYS is given)",
            _lifecycle("suppress"),
        ),
        Subcommand(
            "suppressions", "every suppression in force, with its hits", _lifecycle("suppressions")
        ),
        Subcommand("unsuppress ID", "remove a suppression made in Slack", _lifecycle("unsuppress")),
        Subcommand(
            "pause [reason…]", "stop automatic action everywhere (approvers)", _lifecycle("pause")
        ),
        Subcommand(
            "resume [RESPONDER]",
            "lift the pause, or reset a responder's hourly cap",
            _lifecycle("resume"),
        ),
        Subcommand(
            "extend ACTION HOURS",
            "keep a time-boxed containment longer (approvers)",
            _lifecycle("extend"),
        ),
    ]
}
USAGE = "\n".join(
    ["*Fido commands*", *(f"• `/fido {c.usage}`: {c.help}" for c in COMMANDS.values())]
)


def subcommand(verb: str) -> Subcommand:
    found = COMMANDS.get(verb)
    if found is None:
        raise InputError(f"unknown command `{verb[:40]}`.\n{USAGE}")
    return found


class Replacing:
    """``respond`` for a slow subcommand: every answer, an error's too, replaces the
    "working on it" line instead of adding to it."""

    def __init__(self, respond: AsyncRespond) -> None:
        self.respond = respond

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self.respond(*args, **{**kwargs, "replace_original": True})


def _is_slow(command: dict[str, Any]) -> bool:
    chosen = COMMANDS.get(parse(command.get("text") or "")[0])
    return chosen is not None and chosen.slow


async def _replace_working_line(
    command: dict[str, Any], context: AsyncBoltContext, next_: Callable[[], Awaitable[None]]
) -> None:
    if _is_slow(command) and context.respond is not None:
        context["respond"] = Replacing(context.respond)
    await next_()


def register(app: AsyncApp, engine: Engine, labels: Mapping[str, str]) -> None:
    @app.command("/fido", middleware=[_replace_working_line])
    @answers_errors
    async def fido(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        verb, args = parse(command.get("text") or "")
        if _is_slow(command):
            working = f":hourglass_flowing_sand: Working on `/fido {verb}`…"
            await ack(text=working, response_type="ephemeral")
        else:
            await ack()
        reply = await subcommand(verb).run(Ask(engine, labels, args, command["user_id"]))
        await respond(text=reply.text, blocks=reply.blocks or None, response_type="ephemeral")
