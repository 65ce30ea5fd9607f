"""The ``/fido`` subcommands that stop and restart automatic action, and extend a
time-boxed containment: ``pause``, ``resume [RESPONDER]`` and ``extend ACTION HOURS``.
The incident service authorises the person (approvers only), keeps the state for every
replica and tells the channel."""

from __future__ import annotations

from bot.slack.listeners.lifecycle_commands import Reply, number
from pipeline.errors import InputError
from pipeline.incidents import IncidentService

PAUSE_USAGE = "usage: `/fido pause [reason…]`"
RESUME_USAGE = "usage: `/fido resume` (lift the pause) or `/fido resume RESPONDER` (reset its cap)"
EXTEND_USAGE = "usage: `/fido extend ACTION HOURS`, ACTION as shown on the card"


async def pause(incidents: IncidentService, args: list[str], *, actor: str) -> Reply:
    """``pause [reason…]``"""
    reason = " ".join(args)[:500]
    if await incidents.pause(actor=actor, reason=reason):
        return Reply(
            "Automatic action is paused everywhere: Fido asks instead until `/fido resume`."
        )
    return Reply("Automatic action was already paused.")


async def resume(incidents: IncidentService, args: list[str], *, actor: str) -> Reply:
    """``resume`` or ``resume RESPONDER``"""
    if len(args) > 1:
        raise InputError(RESUME_USAGE)
    if not args:
        if await incidents.resume(actor=actor):
            return Reply("Automatic action is back on.")
        return Reply("Automatic action was not paused.")
    responder = args[0]
    if responder not in incidents.responders:
        known = ", ".join(sorted(incidents.responders)) or "none"
        raise InputError(f"no responder named `{responder[:64]}` (enabled: {known})")
    if await incidents.resume(actor=actor, responder=responder):
        return Reply(f"{responder} may act automatically again.")
    return Reply(f"{responder} had not reached its hourly cap.")


async def extend(incidents: IncidentService, args: list[str], *, actor: str) -> Reply:
    """``extend ACTION HOURS``"""
    if len(args) != 2:
        raise InputError(EXTEND_USAGE)
    action_id = number(args[0], EXTEND_USAGE)
    try:
        hours = float(args[1].removesuffix("h"))
    except ValueError:
        raise InputError(EXTEND_USAGE) from None
    action = await incidents.extend(action_id=action_id, hours=hours, actor=actor)
    assert action.expires_at is not None
    return Reply(
        f"{action.responder} on {action.target} now ends "
        f"<!date^{int(action.expires_at.timestamp())}^{{date_short_pretty}} {{time}}|"
        f"{action.expires_at:%Y-%m-%d %H:%M} UTC>."
    )
