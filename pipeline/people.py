"""Who the people clicking are: what approval needs to know about an approver.

The pipeline asks; the bot answers from Slack (``bot/slack/people.py``: ``users.info`` for
the e-mail, ``usergroups.users.list`` for a group's members). Without Slack (the CLI, the
demo) nobody belongs to a group and nobody has an e-mail.
"""

from __future__ import annotations

from typing import Protocol


class People(Protocol):
    async def email(self, user_id: str) -> str | None:
        """The e-mail of a Slack user; raises when it cannot be learnt right now."""
        ...

    async def in_group(self, user_id: str, group_id: str) -> bool:
        """Whether a Slack user is a member of a Slack user group (S…)."""
        ...


class NoPeople:
    """Nobody is in a group and nobody has an e-mail (no Slack)."""

    async def email(self, user_id: str) -> str | None:
        return None

    async def in_group(self, user_id: str, group_id: str) -> bool:
        return False
