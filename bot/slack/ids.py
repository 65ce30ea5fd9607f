"""Interaction ids and what a button carries: the only strings Slack listeners match on.

Slack requires every ``action_id`` to be unique within a message, and an incident card can
show several Approve buttons (one per proposed action) and several Undo buttons (one per
action taken). So a button's ``action_id`` is its :class:`ActionId` kind, a colon, and a
discriminator that makes it unique in the message::

    fido_approve:ad_disable_account:alice     Approve one proposal (responder:target)
    fido_deny:ad_disable_account:alice        Deny that proposal
    fido_undo:12                              Undo the Action row with id 12
    fido_close:false_positive                 Close the incident with that verdict
    fido_suppress:7                           Suppress alerts like incident 7's
    fido_remove_suppression:3                 Remove suppression db:3 (``/fido suppressions``)

Listeners never parse the discriminator: they match the kind with
``app.action(ACTION_ID_PATTERNS[ActionId.APPROVE])`` and read what to do from the button's
``value``, a small pydantic model in JSON: :class:`ButtonValue` (Approve, Deny, Undo),
:class:`IncidentValue` (Close, Suppress) or :class:`SuppressionValue` (Remove). A
discriminator that would push the id past Slack's 255 characters is replaced by a digest of
itself, so ids stay unique and valid.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from pipeline.models import CloseVerdict

ACTION_ID_MAX = 255  # Slack's limit for action_id
BUTTON_VALUE_MAX = 2000  # Slack's limit for a button's value


class ActionId(StrEnum):
    APPROVE = "fido_approve"
    DENY = "fido_deny"
    UNDO = "fido_undo"
    CLOSE = "fido_close"
    SUPPRESS = "fido_suppress"
    REMOVE_SUPPRESSION = "fido_remove_suppression"


def action_id_for(kind: ActionId, value: str) -> str:
    """The unique ``action_id`` of a ``kind`` button told apart by ``value``."""
    action_id = f"{kind.value}:{value}"
    if len(action_id) <= ACTION_ID_MAX:
        return action_id
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{kind.value}:#{digest}"


def _pattern(kind: ActionId) -> re.Pattern[str]:
    return re.compile(rf"\A{re.escape(kind.value)}(?::.*)?\Z", re.DOTALL)


# For ``app.action(...)``: matches the bare kind and every ``kind:discriminator``.
ACTION_ID_PATTERNS: dict[ActionId, re.Pattern[str]] = {kind: _pattern(kind) for kind in ActionId}


def kind_of(action_id: str) -> ActionId | None:
    """The kind of button an ``action_id`` belongs to, or None if it is not Fido's."""
    for kind, pattern in ACTION_ID_PATTERNS.items():
        if pattern.match(action_id):
            return kind
    return None


class ValueModel(BaseModel):
    """What a button carries, as its JSON ``value``: frozen, and strict about its fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def dump(self) -> str:
        """The JSON for a button's ``value``; raises ValueError past Slack's 2000 chars."""
        value = self.model_dump_json(exclude_none=True)
        if len(value) > BUTTON_VALUE_MAX:
            raise ValueError(f"button value is {len(value)} characters (max {BUTTON_VALUE_MAX})")
        return value


class ButtonValue(ValueModel):
    """What an Approve / Deny / Undo button carries.

    ``action_id`` is the Action row's id (Undo only), not the Slack ``action_id``.
    """

    incident_id: int
    responder: str
    target: str
    action_id: int | None = None
    v: int | None = None  # the incident's decision_version when drawn (Approve, Deny)
    at: int | None = None  # when it was drawn, in Unix seconds: old buttons are refused


class IncidentValue(ValueModel):
    """What a Close or Suppress button carries: the incident, and the verdict (Close) or
    how many days the suppression lasts (Suppress, as its label says)."""

    incident_id: int
    verdict: CloseVerdict | None = None
    days: int | None = None


class SuppressionValue(ValueModel):
    """What a Remove button in ``/fido suppressions`` carries: the ``db:ID`` row's id."""

    suppression_id: int
