"""``/fido suppressions`` and the replies about suppressions: pure functions from
:class:`~pipeline.suppress.ActiveSuppression` records to Block Kit blocks and text.

Each suppression in force shows its key, what it matches, its owner, reason and expiry,
and how many alerts it has silenced; one made from Slack (``db:ID``) has a Remove button,
one from the policy says to edit the policy file instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, ButtonElement, HeaderBlock, PlainTextObject

from bot.slack import elements as el
from bot.slack.ids import ActionId, SuppressionValue
from bot.slack.text import MAX_BLOCKS, VALUE_MAX, code, escape, one_line, slack_date, truncate, who
from pipeline.policy import SuppressionMatch
from pipeline.suppress import ActiveSuppression

MAX_LISTED = MAX_BLOCKS - 4  # header, summary, removed note, "more"


def db_id(suppression: ActiveSuppression) -> int | None:
    """The ``suppression`` row id of one made from Slack (``db:ID``), else None."""
    number = suppression.key.removeprefix("db:")
    return int(number) if suppression.key.startswith("db:") and number.isdigit() else None


FIELD_ORDER = ("detector", "title", "user", "host", "ip", "hash", "domain")


def match_fields(match: SuppressionMatch) -> dict[str, str]:
    """The fields a suppression matches on, the alert's own (detector, title) first."""
    given = match.model_dump(exclude_none=True)
    return {field: given[field] for field in FIELD_ORDER if field in given}


def matches(suppression: ActiveSuppression) -> str:
    fields = match_fields(suppression.match)
    return ", ".join(f"{field} {code(value)}" for field, value in fields.items())


def hits(suppression: ActiveSuppression) -> str:
    if not suppression.hits:
        return "no hits yet"
    text = f"{suppression.hits} hit{'' if suppression.hits == 1 else 's'}"
    if suppression.last_hit_at:
        text += f", last {slack_date(suppression.last_hit_at)}"
    return text


def describe(suppression: ActiveSuppression) -> str:
    """Key and name, what it matches, owner, expiry and hits, and the reason (mrkdwn)."""
    name = escape(truncate(one_line(suppression.name), VALUE_MAX))
    lines = [
        f"🔕 *{escape(suppression.key)}* · {name}",
        f"Matches {matches(suppression)}",
        f"Owner {who(suppression.owner)} · until {slack_date(suppression.expires_at)}"
        f" · {hits(suppression)}",
    ]
    if suppression.reason:
        lines.append(f"_{escape(truncate(one_line(suppression.reason), 500))}_")
    if db_id(suppression) is None:
        lines.append("From the policy file: change it there.")
    return "\n".join(lines)


def _remove_button(suppression: ActiveSuppression, row_id: int) -> ButtonElement:
    confirm = el.confirm(
        "Remove this suppression?",
        f"Alerts matching {suppression.key} will post and trigger actions again.",
        "Remove",
    )
    value = SuppressionValue(suppression_id=row_id)
    return el.button(
        ActionId.REMOVE_SUPPRESSION, "Remove", value, str(row_id), style="danger", confirm=confirm
    )


def suppressions_blocks(
    suppressions: Sequence[ActiveSuppression], *, removed: int | None = None
) -> list[Block]:
    """The answer to ``/fido suppressions``; ``removed`` notes a row just removed."""
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text="🔕 Suppressions in force"))]
    if removed is not None:
        blocks.append(el.context(f"🗑️ Removed `db:{removed}`: matching alerts post again."))
    if not suppressions:
        blocks.append(el.section("No suppression is in force: every alert is triaged."))
        return blocks
    total = sum(s.hits for s in suppressions)
    blocks.append(el.context(f"{len(suppressions)} in force · {total} alerts silenced"))
    for suppression in suppressions[:MAX_LISTED]:
        row_id = db_id(suppression)
        button = _remove_button(suppression, row_id) if row_id is not None else None
        blocks.append(el.section(describe(suppression), accessory=button))
    if len(suppressions) > MAX_LISTED:
        blocks.append(el.context(f"_+{len(suppressions) - MAX_LISTED} more not shown_"))
    return blocks[:MAX_BLOCKS]


def text_of(suppressions: Sequence[ActiveSuppression]) -> str:
    """The notification (fallback) text of the list."""
    return f"{len(suppressions)} suppressions in force"


def suppressed_reply(made: ActiveSuppression, *, incident_id: int) -> str:
    """What the person who suppressed alerts like an incident's is told."""
    number = db_id(made)
    lift = f" `/fido unsuppress {number}` lifts it." if number is not None else ""
    return (
        f"🔕 Alerts like incident #{incident_id}'s ({matches(made)}) are suppressed by "
        f"`{escape(made.key)}` until {slack_date(made.expires_at)}.{lift}"
    )
