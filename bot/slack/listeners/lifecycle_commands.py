"""The ``/fido`` subcommands that end incidents and silence alerts: ``close``,
``suppress``, ``suppressions`` and ``unsuppress``. Each parses its words, calls the incident
service (which authorises the person and updates the card) and returns the reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.slack.lifecycle_blocks import VERDICT_TEXT
from bot.slack.suppression_blocks import suppressed_reply, suppressions_blocks, text_of
from pipeline.errors import InputError
from pipeline.incidents import IncidentService
from pipeline.models import CloseVerdict

CLOSE_USAGE = "usage: `/fido close N tp|fp|benign [reason…]`"
SUPPRESS_USAGE = "usage: `/fido suppress N [DAYS] [reason…]`"
UNSUPPRESS_USAGE = "usage: `/fido unsuppress ID`, an id from `/fido suppressions`"
VERDICTS: dict[str, CloseVerdict] = {
    "tp": CloseVerdict.true_positive, "true_positive": CloseVerdict.true_positive,
    "true-positive": CloseVerdict.true_positive, "resolve": CloseVerdict.true_positive,
    "resolved": CloseVerdict.true_positive,
    "fp": CloseVerdict.false_positive, "false_positive": CloseVerdict.false_positive,
    "false-positive": CloseVerdict.false_positive,
    "benign": CloseVerdict.benign,
}  # fmt: skip


@dataclass
class Reply:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def number(word: str, usage: str) -> int:
    """``7`` or ``#7`` as an incident number, else the usage as an InputError."""
    digits = word.removeprefix("#")
    if not digits.isdigit() or len(digits) > 12:
        raise InputError(usage)
    return int(digits)


async def suppress_like(
    incidents: IncidentService,
    *,
    incident_id: int,
    actor: str,
    days: int | None,
    reason: str = "",
) -> str:
    """Suppress alerts like incident ``incident_id``'s (the service refuses a second identical
    suppression: a second click, a stale card); the reply for the person who asked."""
    made = await incidents.suppress_like(
        incident_id=incident_id, actor=actor, days=days, reason=reason
    )
    return suppressed_reply(made, incident_id=incident_id)


async def close(incidents: IncidentService, args: list[str], *, actor: str) -> Reply:
    """``close N tp|fp|benign [reason…]``"""
    if len(args) < 2 or args[1].lower() not in VERDICTS:
        raise InputError(CLOSE_USAGE)
    incident_id, verdict = number(args[0], CLOSE_USAGE), VERDICTS[args[1].lower()]
    await incidents.close(
        incident_id=incident_id, verdict=verdict, actor=actor, reason=" ".join(args[2:])
    )
    text = f"Closed incident #{incident_id} as {VERDICT_TEXT[verdict]}."
    if verdict is CloseVerdict.false_positive:
        text += f" `/fido suppress {incident_id}` silences alerts like it."
    return Reply(text)


async def suppress(
    incidents: IncidentService, args: list[str], *, actor: str, default_days: int
) -> Reply:
    """``suppress N [DAYS] [reason…]``: DAYS is a number, optionally with a ``d``."""
    if not args:
        raise InputError(SUPPRESS_USAGE)
    incident_id, rest = number(args[0], SUPPRESS_USAGE), args[1:]
    days = default_days
    if rest and rest[0].lower().removesuffix("d").isdigit():
        days = int(rest[0].lower().removesuffix("d"))
        rest = rest[1:]
    text = await suppress_like(
        incidents, incident_id=incident_id, actor=actor, days=days, reason=" ".join(rest)
    )
    return Reply(text)


async def suppressions(incidents: IncidentService, args: list[str]) -> Reply:
    if args:
        raise InputError("usage: `/fido suppressions`")
    found = await incidents.suppressions()
    return Reply(text_of(found), [b.to_dict() for b in suppressions_blocks(found)])


async def unsuppress(incidents: IncidentService, args: list[str], *, actor: str) -> Reply:
    """``unsuppress ID``, or ``db:ID`` as the list shows it."""
    if len(args) != 1:
        raise InputError(UNSUPPRESS_USAGE)
    if args[0].startswith("policy:"):
        raise InputError(f"`{args[0][:80]}` is in the policy file: remove it there")
    suppression_id = number(args[0].removeprefix("db:"), UNSUPPRESS_USAGE)
    await incidents.remove_suppression(suppression_id=suppression_id, actor=actor)
    return Reply(f"Removed suppression `db:{suppression_id}`: matching alerts post again.")
