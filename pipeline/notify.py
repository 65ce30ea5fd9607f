"""How the pipeline tells people: a tiny protocol the bot implements with Slack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.models import Action, Incident


@dataclass(frozen=True)
class MessageRef:
    """Where an incident's card lives, so later changes update it in place."""

    channel: str
    ts: str


class Notifier(Protocol):
    async def publish(self, incident: Incident, actions: Sequence[Action]) -> MessageRef | None:
        """Post the incident's card, or update it when ``incident.message_ts`` is set."""
        ...

    async def notice(self, text: str) -> None:
        """Tell the channel something that is not about one incident (e.g. a pause)."""
        ...


class NullNotifier:
    """Tells no one: for tests and for running the pipeline without Slack."""

    def __init__(self) -> None:
        self.published: list[tuple[Incident, list[Action]]] = []
        self.notices: list[str] = []

    async def publish(self, incident: Incident, actions: Sequence[Action]) -> MessageRef | None:
        self.published.append((incident, list(actions)))
        return None

    async def notice(self, text: str) -> None:
        self.notices.append(text)
