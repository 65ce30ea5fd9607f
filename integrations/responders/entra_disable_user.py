"""``entra_disable_user``: block a user's sign-in in Entra ID; Undo enables them again.

Followed: Microsoft Graph "Update user" (learn.microsoft.com/graph/api/user-update):
``PATCH /v1.0/users/{id}`` with ``{"accountEnabled": false}`` answers ``204 No
Content``; Undo sends ``{"accountEnabled": true}``. The least privileged application
permissions to read and write ``accountEnabled`` are ``User.EnableDisableAccount.All`` +
``User.Read.All`` ("Get user", permissions for specific scenarios); disabling an
administrator also needs a suitable Entra role for the app. Token and lookup: see
``entra_common``.

Idempotent: the user is read first (``$select=…accountEnabled``); one already disabled is
reported "already disabled; nothing changed", and Undo then leaves them disabled
(``changed: false`` in the undo data). Undo reads the account again and only enables it
when it is still disabled. Disabling stops new sign-ins; tokens already issued keep
working until they expire unless ``entra_revoke_sessions`` revokes them too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ConfigDict, SecretStr

from integrations.responders.entra_common import (
    ENTRA_EXAMPLE,
    EntraOptions,
    GraphUser,
    GraphUsers,
    object_id_from,
)
from integrations.responders.vendor_http import http_client
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import Context, Impact, ResponderResult, person_details, responders

log = logging.getLogger(__name__)


class EntraDisableOptions(EntraOptions):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [ENTRA_EXAMPLE]},
    )


@responders.register("entra_disable_user")
class EntraDisableUser:
    """Disable an Entra ID account until Undo."""

    name = "entra_disable_user"
    target_kind: Kind = "user"
    label = "disable"
    reversible = True
    impact = Impact.high
    Options = EntraDisableOptions

    def __init__(
        self, options: EntraDisableOptions, *, http: httpx.AsyncClient, client_secret: SecretStr
    ) -> None:
        self.options = options
        self.users = GraphUsers(options, http=http, client_secret=client_secret)

    @classmethod
    def build(cls, options: EntraDisableOptions, context: Context) -> EntraDisableUser:
        """The responder for ``options``, its client secret read from the named variable."""
        secret = SecretStr(context.secret(options.client_secret_env))
        return cls(options, http=http_client(context), client_secret=secret)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            self.users.upn_for(target, refusing="disable")
        except ResponderError as exc:
            return str(exc)
        return (
            f"Disable {target}{person_details(facts)} in Entra ID — they cannot sign in until Undo "
            "(tokens already issued last until they expire)"
        )

    async def execute(self, target: str) -> ResponderResult:
        doing = f"disable {target} in Entra ID"
        key = self.users.upn_for(target, refusing="disable")
        user = await self.users.require(key, doing=doing)
        if user.account_enabled is False:
            return ResponderResult(
                summary=f"{user.named} was already disabled in Entra ID; nothing changed",
                undo_data=_undo_data(user, changed=False),
            )
        await self._set_enabled(user.id, False, doing=doing)
        log.info("entra_disable_user: disabled %s (%s)", user.upn, user.id)
        return ResponderResult(
            summary=f"Disabled {user.named} in Entra ID (object {user.id}); they cannot "
            "sign in until Undo",
            undo_data=_undo_data(user, changed=True),
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        user_id = object_id_from(undo_data, target, undoing="disabling")
        changed = undo_data.get("changed")
        if not isinstance(changed, bool):
            raise ResponderError(
                f"Cannot undo disabling {target}: the undo data does not say whether Fido "
                "disabled them"
            )
        upn = str(undo_data.get("upn") or target)
        if not changed:
            return ResponderResult(
                summary=f"Left {upn} disabled in Entra ID: they were disabled before Fido acted"
            )
        doing = f"enable {upn} in Entra ID again"
        user = await self.users.find(user_id, doing=doing)
        if user is None:
            raise ResponderError(f"Could not {doing}: {user_id} is no longer in Entra ID")
        if user.account_enabled is True:
            return ResponderResult(summary=f"{user.named} was already enabled in Entra ID")
        await self._set_enabled(user.id, True, doing=doing)
        log.info("entra_disable_user: enabled %s (%s)", user.upn, user.id)
        return ResponderResult(summary=f"Enabled {user.named} in Entra ID again")

    async def _set_enabled(self, user_id: str, enabled: bool, *, doing: str) -> None:
        response = await self.users.call(
            "PATCH", self.users.user_url(user_id), doing=doing, json={"accountEnabled": enabled}
        )
        if response.status_code == 404:
            raise ResponderError(f"Could not {doing}: {user_id} is no longer in Entra ID")
        if not response.is_success:
            raise self.users.api.error(response, doing=doing)


def _undo_data(user: GraphUser, *, changed: bool) -> dict[str, Any]:
    return {"user_id": user.id, "upn": user.upn, "changed": changed}
