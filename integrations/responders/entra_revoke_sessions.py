"""``entra_revoke_sessions``: revoke every Entra ID sign-in session of a user.

Followed: Microsoft Graph "user: revokeSignInSessions"
(learn.microsoft.com/graph/api/user-revokesigninsessions): ``POST
/v1.0/users/{id}/revokeSignInSessions`` without a body invalidates the refresh tokens
issued to applications and the browser session cookies, by resetting
``signInSessionsValidFromDateTime``; it answers ``200 {"@odata.context": …, "value":
true}`` (a documented known issue has it answer 204 instead, also accepted). Microsoft
notes the revocation can take a few minutes, and external (B2B) users are not affected.
Application permission: ``User.RevokeSessions.All``. Token and user lookup: see
``entra_common``.

Revoking cannot be undone: Undo refuses and says so. Running it twice is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ConfigDict, SecretStr

from integrations.responders.entra_common import ENTRA_EXAMPLE, EntraOptions, GraphUsers
from integrations.responders.vendor_http import http_client
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, Impact, ResponderResult, person_details, responders

log = logging.getLogger(__name__)


class EntraRevokeOptions(EntraOptions):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [ENTRA_EXAMPLE]},
    )


@responders.register("entra_revoke_sessions")
class EntraRevokeSessions:
    """Revoke a user's Entra ID sign-in sessions (not reversible)."""

    name = "entra_revoke_sessions"
    target_kind: Kind = "user"
    label = "revoke Entra sessions of"
    reversible = False
    impact = Impact.low
    Options = EntraRevokeOptions

    def __init__(
        self, options: EntraRevokeOptions, *, http: httpx.AsyncClient, client_secret: SecretStr
    ) -> None:
        self.options = options
        self.users = GraphUsers(options, http=http, client_secret=client_secret)

    @classmethod
    def build(cls, options: EntraRevokeOptions, context: Context) -> EntraRevokeSessions:
        """The responder for ``options``, its client secret read from the named variable."""
        secret = SecretStr(context.secret(options.client_secret_env))
        return cls(options, http=http_client(context), client_secret=secret)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            self.users.upn_for(target, refusing="revoke the sessions of")
        except ResponderError as exc:
            return str(exc)
        return (
            f"Revoke every Entra ID sign-in session of {target}{person_details(facts)} — apps and "
            "browsers must sign in again within minutes; this cannot be undone"
        )

    async def execute(self, target: str) -> ResponderResult:
        doing = f"revoke the Entra ID sessions of {target}"
        key = self.users.upn_for(target, refusing="revoke the sessions of")
        user = await self.users.require(key, doing=doing)
        url = f"{self.users.user_url(user.id)}/revokeSignInSessions"
        response = await self.users.call("POST", url, doing=doing)
        if response.status_code == 404:
            raise ResponderError(f"Could not {doing}: no such user in Entra ID ({user.id})")
        if not response.is_success:
            raise self.users.api.error(response, doing=doing)
        if response.status_code == 200:
            body = self.users.api.json(response, doing=doing)
            if not isinstance(body, Mapping) or body.get("value") is not True:
                raise ResponderError(
                    f'Could not {doing}: Graph did not confirm it (no "value": true)'
                )
        log.info("entra_revoke_sessions: revoked the sessions of %s (%s)", user.upn, user.id)
        return ResponderResult(
            summary=f"Revoked every Entra ID sign-in session of {user.named}; apps and "
            "browsers must sign in again (Microsoft allows a few minutes)",
            undo_data={"user_id": user.id, "upn": user.upn},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        raise ResponderError(
            f"Revoking the Entra ID sessions of {target} cannot be undone: they sign in "
            "again themselves when they are allowed to"
        )
