"""``okta_suspend_user``: suspend a user in Okta so they cannot sign in; Undo unsuspends.

Followed: Okta Users API reference, "Get User with Login", "Suspend User" and "Unsuspend
User" (developer.okta.com/docs/reference/api/users/, now
developer.okta.com/docs/api/openapi/okta-management/management/tag/UserLifecycle/):

- ``POST /api/v1/users/{id}/lifecycle/suspend`` answers 200 with an empty object; only an
  ``ACTIVE`` user can be suspended, anyone else gets 400 E0000001 ("Api validation failed:
  suspendUser", cause "Cannot suspend a user that is not active");
- ``POST /api/v1/users/{id}/lifecycle/unsuspend`` answers 200; only a ``SUSPENDED`` user,
  anyone else gets 400 E0000001.

Idempotent: the user is read first. One already ``SUSPENDED`` (or deactivated,
``DEPROVISIONED``) is reported "already …; nothing changed", and Undo then leaves them as
they were (``changed: false`` in the undo data), like ``ad_disable_account``. A user who
is suspended by someone else between the read and the call (Okta's 400 E0000001) is read
again and reported the same way. Suspension keeps groups and app assignments (Okta's
"Role assignment" concept page adds that suspending also clears the user's Okta sessions;
``okta_clear_sessions`` does that, and revokes OAuth tokens, without suspending).

The API token's admin needs ``okta.users.read``, ``okta.users.lifecycle.suspend`` and
``okta.users.lifecycle.unsuspend`` (a custom admin role) or a standard role that includes
them, such as Org Administrator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ConfigDict, SecretStr

from integrations.responders.okta_common import (
    OktaOptions,
    OktaUser,
    OktaUsers,
    error_code,
    user_id_from,
)
from integrations.responders.vendor_http import http_client
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, Impact, ResponderResult, person_details, responders

log = logging.getLogger(__name__)

ALREADY = {"SUSPENDED": "already suspended", "DEPROVISIONED": "deactivated"}


class OktaSuspendOptions(OktaOptions):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"base_url": "https://acme.okta.com", "api_token_env": "FIDO_OKTA_TOKEN"}]
        },
    )


@responders.register("okta_suspend_user")
class OktaSuspendUser:
    """Suspend an Okta user until Undo."""

    name = "okta_suspend_user"
    target_kind: Kind = "user"
    label = "suspend"
    reversible = True
    impact = Impact.high
    Options = OktaSuspendOptions

    def __init__(
        self, options: OktaSuspendOptions, *, http: httpx.AsyncClient, token: SecretStr
    ) -> None:
        self.options = options
        self.users = OktaUsers(options, http=http, token=token)

    @classmethod
    def build(cls, options: OktaSuspendOptions, context: Context) -> OktaSuspendUser:
        """The responder for ``options``, its API token read from the named variable."""
        token = SecretStr(context.secret(options.api_token_env))
        return cls(options, http=http_client(context), token=token)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            self.users.login_for(target, refusing="suspend")
        except ResponderError as exc:
            return str(exc)
        return f"Suspend {target}{person_details(facts)} in Okta — they cannot sign in until Undo"

    async def execute(self, target: str) -> ResponderResult:
        doing = f"suspend {target} in Okta"
        login = self.users.login_for(target, refusing="suspend")
        user = await self.users.find(login, doing=doing)
        if user.status in ALREADY:
            return _unchanged(user)
        response = await self.users.call("POST", user.id, "lifecycle", "suspend", doing=doing)
        if response.status_code == 400 and error_code(response) == "E0000001":
            now = await self.users.get(user.id, doing=doing)
            if now is not None and now.status in ALREADY:
                return _unchanged(now)
            status = now.status if now is not None else "no longer in Okta"
            raise ResponderError(
                f"Could not {doing}: Okta suspends only ACTIVE users and {user.login} is "
                f"{status} ({self.users.api.words(response)})"
            )
        if not response.is_success:
            raise self.users.api.error(response, doing=doing)
        log.info("okta_suspend_user: suspended %s (%s)", user.login, user.id)
        return ResponderResult(
            summary=f"Suspended {_named(user)} in Okta (user {user.id}); "
            "they cannot sign in until Undo",
            undo_data={"user_id": user.id, "login": user.login, "changed": True},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        user_id = user_id_from(undo_data, target, undoing="suspending")
        changed = undo_data.get("changed")
        if not isinstance(changed, bool):
            raise ResponderError(
                f"Cannot undo suspending {target}: the undo data does not say whether Fido "
                "suspended them"
            )
        login = str(undo_data.get("login") or target)
        if not changed:
            return ResponderResult(
                summary=f"Left {login} as they were in Okta: they were suspended or "
                "deactivated before Fido acted"
            )
        doing = f"unsuspend {login} in Okta"
        response = await self.users.call("POST", user_id, "lifecycle", "unsuspend", doing=doing)
        if response.status_code == 404:
            raise ResponderError(f"Could not {doing}: user {user_id} is no longer in Okta")
        if response.status_code == 400 and error_code(response) == "E0000001":
            now = await self.users.get(user_id, doing=doing)
            if now is None:
                raise ResponderError(f"Could not {doing}: user {user_id} is no longer in Okta")
            if now.status != "SUSPENDED":
                return ResponderResult(
                    summary=f"{login} was no longer suspended in Okta (status {now.status}); "
                    "nothing to undo"
                )
            raise ResponderError(f"Could not {doing}: {self.users.api.words(response)}")
        if not response.is_success:
            raise self.users.api.error(response, doing=doing)
        log.info("okta_suspend_user: unsuspended %s (%s)", login, user_id)
        return ResponderResult(summary=f"Unsuspended {login} in Okta; they can sign in again")


def _named(user: OktaUser) -> str:
    return f"{user.login} ({user.display_name})" if user.display_name else user.login


def _unchanged(user: OktaUser) -> ResponderResult:
    return ResponderResult(
        summary=f"{_named(user)} was {ALREADY[user.status]} in Okta; nothing changed",
        undo_data={"user_id": user.id, "login": user.login, "changed": False},
    )
