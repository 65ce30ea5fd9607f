"""Switches approvers set for every replica, kept in the database across restarts.

- ``pause``: no automatic action runs anywhere; incidents that would act ask instead.
- ``cap:RESPONDER``: the responder ran more automatic actions in an hour than its rule's
  ``max_auto_per_hour``; it asks instead of acting until an approver resets it.
- ``reset:RESPONDER``: when an approver last reset that cap; its count starts again there
  (else the actions of the hour that tripped it would trip it again at once).

Triage reads them in its own transaction (``read``); setting one also queues a notice to
the channel, in the same transaction, so the channel always learns of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pipeline import audit, outbox
from pipeline.clock import as_utc
from pipeline.models import Control, utcnow

PAUSE = "pause"
CAP = "cap:"
RESET = "reset:"


@dataclass(frozen=True)
class Switches:
    """What stops automatic action now."""

    paused_by: str | None = None
    paused_at: datetime | None = None
    tripped: frozenset[str] = field(default_factory=frozenset)  # responders past their cap
    reset_at: Mapping[str, datetime] = field(default_factory=dict)  # cap reset, by responder

    @property
    def paused(self) -> bool:
        return self.paused_by is not None


async def read(session: AsyncSession) -> Switches:
    rows = (await session.exec(select(Control))).all()
    pause = next((r for r in rows if r.key == PAUSE), None)
    return Switches(
        paused_by=pause.set_by if pause else None,
        paused_at=pause.set_at if pause else None,
        tripped=frozenset(r.key.removeprefix(CAP) for r in rows if r.key.startswith(CAP)),
        reset_at={
            r.key.removeprefix(RESET): as_utc(r.set_at) for r in rows if r.key.startswith(RESET)
        },
    )


async def pause(session: AsyncSession, *, actor: str, reason: str = "") -> bool:
    """Pause automatic action (False if it was paused already); not committed."""
    if await session.get(Control, PAUSE) is not None:
        return False
    session.add(Control(key=PAUSE, value={"reason": reason}, set_by=actor, set_at=utcnow()))
    audit.record(session, actor=actor, verb="automation.paused", target="all", reason=reason)
    why = f": {reason}" if reason else ""
    outbox.enqueue_notice(
        session,
        f":double_vertical_bar: <@{actor}> paused automatic action{why}. Fido asks for "
        "approval instead until `/fido resume`.",
    )
    return True


async def resume(session: AsyncSession, *, actor: str) -> bool:
    """Lift the pause (False if it was not paused); not committed."""
    row = await session.get(Control, PAUSE)
    if row is None:
        return False
    await session.delete(row)
    audit.record(session, actor=actor, verb="automation.resumed", target="all")
    outbox.enqueue_notice(session, f":arrow_forward: <@{actor}> resumed automatic action.")
    return True


async def trip(session: AsyncSession, *, responder: str, cap: int, count: int) -> None:
    """``responder`` went past its hourly cap: it asks from now on (not committed)."""
    if await session.get(Control, CAP + responder) is not None:
        return
    session.add(Control(key=CAP + responder, value={"cap": cap, "count": count}, set_by="fido"))
    audit.record(session, actor="fido", verb="automation.cap_tripped", target=responder, cap=cap)
    outbox.enqueue_notice(
        session,
        f":rotating_light: *{responder} reached its cap of {cap} automatic actions in an "
        f"hour.* It now asks for approval before every action, until an approver runs "
        f"`/fido resume {responder}`.",
    )


async def reset(session: AsyncSession, *, responder: str, actor: str) -> bool:
    """Let a tripped responder act automatically again (False if it was not tripped)."""
    row = await session.get(Control, CAP + responder)
    if row is None:
        return False
    await session.delete(row)
    mark = await session.get(Control, RESET + responder)
    if mark is None:
        mark = Control(key=RESET + responder, set_by=actor)
    mark.set_by, mark.set_at = actor, utcnow()
    session.add(mark)
    audit.record(session, actor=actor, verb="automation.cap_reset", target=responder)
    outbox.enqueue_notice(
        session, f":arrow_forward: <@{actor}> let {responder} act automatically again."
    )
    return True


async def tripped(session: AsyncSession) -> list[str]:
    rows = await session.exec(select(Control.key).where(col(Control.key).startswith(CAP)))
    return [key.removeprefix(CAP) for key in rows.all()]
