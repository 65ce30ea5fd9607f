"""``okta_clear_sessions``: end every Okta session of a user, so they must sign in again.

Followed: Okta Users API reference, "Get User with Login" and "Clear User Sessions"
(developer.okta.com/docs/reference/api/users/#clear-user-sessions, now
developer.okta.com/docs/api/openapi/okta-management/management/tag/UserSessions/):
``DELETE /api/v1/users/{id}/sessions`` removes the user's identity-provider sessions and
answers ``204 No Content``; with ``oauthTokens=true`` it also revokes the OpenID Connect
and OAuth access and refresh tokens issued to them (on by default here). Okta notes it does
not end sessions an application keeps by itself.

The API token's admin needs ``okta.users.read`` and ``okta.users.lifecycle.clearSessions``
("clear all active Okta sessions and OAuth tokens for a user"), or a standard role with them.

Ending a session cannot be undone: Undo refuses and says so. Running it twice is harmless
(Okta answers 204 whether or not there were sessions).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ConfigDict, SecretStr

from integrations.responders.okta_common import OktaOptions, OktaUsers
from integrations.responders.vendor_http import http_client
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, Impact, ResponderResult, person_details, responders

log = logging.getLogger(__name__)


class OktaClearSessionsOptions(OktaOptions):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "base_url": "https://acme.okta.com",
                    "api_token_env": "FIDO_OKTA_TOKEN",
                    "revoke_oauth_tokens": True,
                }
            ]
        },
    )

    revoke_oauth_tokens: bool = True  # also revoke OIDC/OAuth access and refresh tokens


@responders.register("okta_clear_sessions")
class OktaClearSessions:
    """End a user's Okta sessions (not reversible)."""

    name = "okta_clear_sessions"
    target_kind: Kind = "user"
    label = "end Okta sessions of"
    reversible = False
    impact = Impact.low
    Options = OktaClearSessionsOptions

    def __init__(
        self, options: OktaClearSessionsOptions, *, http: httpx.AsyncClient, token: SecretStr
    ) -> None:
        self.options = options
        self.users = OktaUsers(options, http=http, token=token)

    @classmethod
    def build(cls, options: OktaClearSessionsOptions, context: Context) -> OktaClearSessions:
        """The responder for ``options``, its API token read from the named variable."""
        token = SecretStr(context.secret(options.api_token_env))
        return cls(options, http=http_client(context), token=token)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            self.users.login_for(target, refusing="end the Okta sessions of")
        except ResponderError as exc:
            return str(exc)
        tokens = " and revoke their OAuth tokens" if self.options.revoke_oauth_tokens else ""
        return (
            f"End every Okta session of {target}{person_details(facts)}{tokens} — they must "
            "sign in again; this cannot be undone"
        )

    async def execute(self, target: str) -> ResponderResult:
        doing = f"end the Okta sessions of {target}"
        login = self.users.login_for(target, refusing="end the Okta sessions of")
        user = await self.users.find(login, doing=doing)
        params = {"oauthTokens": "true"} if self.options.revoke_oauth_tokens else {}
        response = await self.users.call("DELETE", user.id, "sessions", doing=doing, params=params)
        if response.status_code == 404:
            raise ResponderError(f"Could not {doing}: user {user.id} is no longer in Okta")
        if not response.is_success:
            raise self.users.api.error(response, doing=doing)
        log.info("okta_clear_sessions: ended the sessions of %s (%s)", user.login, user.id)
        named = f"{user.login} ({user.display_name})" if user.display_name else user.login
        tokens = " and revoked their OAuth tokens" if self.options.revoke_oauth_tokens else ""
        return ResponderResult(
            summary=f"Ended every Okta session of {named}{tokens}; they must sign in again",
            undo_data={"user_id": user.id, "login": user.login},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        raise ResponderError(
            f"Ending the Okta sessions of {target} cannot be undone: they sign in again "
            "themselves when they are allowed to"
        )
