"""What approval needs to know about a Slack user, asked of Slack and kept a few minutes.

``users.info`` gives the e-mail (scope ``users:read.email``) for the self-approval check;
``usergroups.users.list`` gives a user group's members (scope ``usergroups:read``) for
approvers named by group. Answers are cached for ``ttl`` seconds: a click costs at most one
call of each, and a revoked membership takes effect within minutes.
"""

from __future__ import annotations

import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from pipeline.errors import IntegrationError


class SlackPeople:
    def __init__(self, client: AsyncWebClient, *, ttl: float = 300.0) -> None:
        self.client = client
        self.ttl = ttl
        self._emails: dict[str, tuple[float, str | None]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def email(self, user_id: str) -> str | None:
        cached = self._emails.get(user_id)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        try:
            answer = await self.client.users_info(user=user_id)
        except SlackApiError as exc:
            raise IntegrationError(f"Slack users.info: {exc.response.get('error')}") from None
        profile = (answer.get("user") or {}).get("profile") or {}
        email = profile.get("email") or None
        self._emails[user_id] = (time.monotonic(), email)
        return email

    async def in_group(self, user_id: str, group_id: str) -> bool:
        cached = self._groups.get(group_id)
        if cached is None or time.monotonic() - cached[0] >= self.ttl:
            try:
                answer = await self.client.usergroups_users_list(usergroup=group_id)
            except SlackApiError as exc:
                error = exc.response.get("error")
                raise IntegrationError(f"Slack usergroups.users.list: {error}") from None
            cached = (time.monotonic(), frozenset(answer.get("users") or []))
            self._groups[group_id] = cached
        return user_id in cached[1]
