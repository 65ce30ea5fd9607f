"""``webhook``: hand an action to any system that takes a signed HTTP POST.

Fido POSTs ``application/json``::

    {"action": "contain", "target": "alice", "incident": 42, "undo": false,
     "sent_at": "2024-05-01T12:00:00Z"}

(keys sorted, no spaces; ``incident`` is the number of the incident the action belongs to,
``current_incident()``, null for ``fido respond``) with

- ``X-Fido-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body with the secret from
  the environment variable ``secret_env`` (GitHub's ``X-Hub-Signature-256`` scheme); the
  receiver recomputes it over the bytes it received and compares in constant time;
- ``X-Fido-Timestamp: <unix seconds>``, the same moment as ``sent_at``; ``sent_at`` is
  inside the signed body, so a receiver that refuses deliveries older than a few minutes is
  safe from replays.

Any 2xx is success; a 4xx or 5xx is a ResponderError naming the status and a short excerpt
of the answer (429 says when to retry, from ``Retry-After``). Redirects are not followed.
The URL may itself be a secret (many webhook URLs carry a token), so messages name only its
host.

Reversible only when configured: with ``undo_url``, Undo POSTs the same body with
``"undo": true`` there; with ``reversible: true`` and no ``undo_url``, to ``url``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from integrations.responders.vendor_http import (
    BaseURL,
    Seconds,
    VendorAPI,
    clean_target,
    http_client,
)
from pipeline.errors import ResponderError
from pipeline.observables import Kind
from pipeline.plugins import (
    Context,
    EnvName,
    Impact,
    ResponderResult,
    current_incident,
    person_details,
    responders,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Fido-Signature"
TIMESTAMP_HEADER = "X-Fido-Timestamp"


class WebhookOptions(BaseModel):
    """The responder's settings, as the policy gives them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://soar.corp.example/hooks/fido",
                    "secret_env": "FIDO_WEBHOOK_SECRET",
                    "undo_url": "https://soar.corp.example/hooks/fido-undo",
                }
            ]
        },
    )

    url: BaseURL  # where actions are POSTed
    secret_env: EnvName  # the variable holding the HMAC secret
    undo_url: BaseURL | None = None  # where Undo is POSTed (makes the action reversible)
    reversible: bool | None = None  # true without undo_url: Undo is POSTed to url
    action: str = Field(default="contain", pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    label: str = Field(default="contain", min_length=1, max_length=40)  # the button's verb
    target_kind: Literal["user", "host"] = "user"
    impact: Literal["low", "high"] = "high"
    timeout: Seconds = 10.0

    @model_validator(mode="after")
    def _undo_needs_reversible(self) -> WebhookOptions:
        if self.undo_url is not None and self.reversible is False:
            raise ValueError("undo_url is set but reversible is false; drop one of them")
        return self

    @property
    def can_undo(self) -> bool:
        return self.undo_url is not None or self.reversible is True


def webhook_detail(response: httpx.Response) -> str:
    return response.text


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: what ``X-Fido-Signature`` carries for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@responders.register("webhook")
class WebhookResponder:
    """POST a signed JSON body for each action (and, when configured, each Undo)."""

    name = "webhook"
    target_kind: Kind = "user"
    label = "contain"
    reversible = False
    impact = Impact.high
    Options = WebhookOptions

    def __init__(
        self,
        options: WebhookOptions,
        *,
        http: httpx.AsyncClient,
        secret: SecretStr,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.options = options
        self._secret = secret
        self._now = now
        self.target_kind = options.target_kind
        self.label = options.label
        self.reversible = options.can_undo
        self.impact = Impact(options.impact)
        self.api = VendorAPI(
            f"the webhook at {httpx.URL(options.url).host}",
            http,
            timeout=options.timeout,
            secrets=lambda: [secret.get_secret_value(), options.url, options.undo_url or ""],
            words=webhook_detail,
            credentials=f"the receiver's secret (in {options.secret_env})",
        )

    @classmethod
    def build(cls, options: WebhookOptions, context: Context) -> WebhookResponder:
        """The responder for ``options``, its HMAC secret read from the named variable."""
        secret = SecretStr(context.secret(options.secret_env))
        return cls(options, http=http_client(context), secret=secret)

    def plan(self, target: str, facts: Mapping[str, Any] | None = None) -> str:
        """What the confirm dialog says will happen."""
        try:
            clean_target(target, refusing=f"send {self.options.action!r} for")
        except ResponderError as exc:
            return str(exc)
        host = httpx.URL(self.options.url).host
        after = "Undo sends it again with undo: true" if self.reversible else "cannot be undone"
        return (
            f"Send {self.options.action!r} for {target}{person_details(facts)} to {host} (signed "
            f"webhook) — {after}"
        )

    async def execute(self, target: str) -> ResponderResult:
        value = clean_target(target, refusing=f"send {self.options.action!r} for")
        incident = current_incident()
        status = await self._post(self.options.url, value, incident=incident, undo=False)
        host = httpx.URL(self.options.url).host
        log.info(
            "webhook: sent %s for %s to %s (HTTP %d)", self.options.action, value, host, status
        )
        return ResponderResult(
            summary=f"Sent {self.options.action!r} for {value} to {host} (HTTP {status})",
            undo_data={"delivered": True, "incident": incident, "action": self.options.action},
        )

    async def undo(self, target: str, undo_data: dict[str, Any]) -> ResponderResult:
        if not self.reversible:
            raise ResponderError(
                f"The webhook action on {target} cannot be undone: no undo_url is configured"
            )
        if not isinstance(undo_data, Mapping) or undo_data.get("delivered") is not True:
            raise ResponderError(
                f"Cannot undo the webhook action on {target}: the undo data does not show "
                "that it was delivered"
            )
        incident = undo_data.get("incident")
        if incident is not None and (isinstance(incident, bool) or not isinstance(incident, int)):
            raise ResponderError(
                f"Cannot undo the webhook action on {target}: the undo data names no incident"
            )
        value = clean_target(target, refusing=f"send the undo of {self.options.action!r} for")
        url = self.options.undo_url or self.options.url
        status = await self._post(url, value, incident=incident, undo=True)
        host = httpx.URL(url).host
        return ResponderResult(
            summary=f"Sent the undo of {self.options.action!r} for {value} to {host} "
            f"(HTTP {status})"
        )

    async def _post(self, url: str, target: str, *, incident: int | None, undo: bool) -> int:
        moment = self._now().astimezone(UTC).replace(microsecond=0)
        body = json.dumps(
            {
                "action": self.options.action,
                "target": target,
                "incident": incident,
                "undo": undo,
                "sent_at": moment.isoformat().replace("+00:00", "Z"),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._secret.get_secret_value(), body),
            TIMESTAMP_HEADER: str(int(moment.timestamp())),
        }
        verb = "send the undo of" if undo else "send"
        doing = f"{verb} {self.options.action!r} for {target}"
        response = await self.api.send("POST", url, doing=doing, content=body, headers=headers)
        if not response.is_success:
            raise self.api.error(response, doing=doing)
        return response.status_code
