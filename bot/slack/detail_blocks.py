"""Blocks for the reads: ``/fido incident N`` (the card with every point of its score and
one timeline of events, actions and clicks), ``/fido incidents`` and ``/fido stats``.
Pure functions, like the card's; every value from outside is escaped."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock, PlainTextObject

from bot.slack import elements as el
from bot.slack.blocks import DECISION_TEXT, SEVERITY_EMOJI, incident_card
from bot.slack.lifecycle_blocks import VERDICT_TEXT
from bot.slack.text import (
    MAX_BLOCKS,
    SECTION_MAX,
    code,
    escape,
    one_line,
    slack_date,
    truncate,
    who,
)
from pipeline.models import Action, Incident, IncidentStatus
from pipeline.reads import Moment, TimelineEntry, Which
from pipeline.stats import Stats

MOMENT_EMOJI = {Moment.action: "⚙️", Moment.click: "👆", Moment.fido: "🐕"}
MAX_TIMELINE = 40  # the latest moments; older ones are counted
TIMELINE_SECTIONS = 2  # the card leaves room for two more blocks under Slack's 50
WHICH_TEXT = {
    Which.open: "Open incidents, highest score first",
    Which.mine: "Incidents you acted on, latest first",
    Which.today: "Incidents of the last 24 hours",
}


def _timeline_line(entry: TimelineEntry) -> str:
    when = slack_date(entry.at)
    text = escape(truncate(one_line(entry.what), 160))
    if entry.moment is Moment.event:  # as the card's own timeline draws an event
        line = f"• {when} · {code(entry.actor)} · {SEVERITY_EMOJI.get(entry.severity, '⚪')} {text}"
        return line + (f" · 🔕 {code(entry.suppressed_by)}" if entry.suppressed_by else "")
    return f"• {when} · {MOMENT_EMOJI[entry.moment]} {who(entry.actor)} · {text}"


def timeline_blocks(entries: Sequence[TimelineEntry]) -> list[Block]:
    """The timeline in at most two sections, the latest moments kept."""
    shown = list(entries)[-MAX_TIMELINE:]
    events = sum(e.moment is Moment.event for e in entries)
    title = f"*Timeline* · {events} event{'' if events == 1 else 's'}"
    title += f", {len(entries) - events} actions, clicks and decisions"
    if len(entries) > len(shown):
        title += f" · the first {len(entries) - len(shown)} not shown"
    sections: list[list[str]] = [[title]]
    for line in map(_timeline_line, shown):
        if sum(len(x) + 1 for x in sections[-1]) + len(line) > SECTION_MAX:
            if len(sections) == TIMELINE_SECTIONS:
                sections[-1].append("_…_")
                break
            sections.append([])
        sections[-1].append(line)
    return [el.section("\n".join(s)) for s in sections]


def incident_detail(
    incident: Incident,
    actions: Sequence[Action],
    timeline: Sequence[TimelineEntry],
    *,
    labels: Mapping[str, str],
    reversible: Collection[str] = frozenset(),
    suppression_days: int,
    suppression: str | None,
) -> list[Block]:
    """The card with the whole score breakdown, and the timeline above its decision."""
    card = incident_card(
        incident,
        actions,
        labels=labels,
        reversible=reversible,
        full=True,
        suppression_days=suppression_days,
        suppression=suppression,
    )
    at = next((i for i, b in enumerate(card) if isinstance(b, DividerBlock)), len(card))
    return (card[:at] + timeline_blocks(timeline) + card[at:])[:MAX_BLOCKS]


def incident_line(incident: Incident) -> str:
    """One incident on one line (and a second for its numbers), for lists."""
    emoji = SEVERITY_EMOJI.get(incident.severity, "•")
    decision = DECISION_TEXT.get(incident.decision or "", escape(incident.decision or "undecided"))
    state = "open"
    if incident.status == IncidentStatus.closed.value:
        state = f"closed, {VERDICT_TEXT.get(incident.verdict or '', 'no verdict')}"
    events = f"{incident.event_count} event{'' if incident.event_count == 1 else 's'}"
    return truncate(
        f"{emoji} *#{incident.id}* {escape(truncate(one_line(incident.title), 200))}\n"
        f"{incident.score}/100 · {decision} · {state} · {events} · "
        f"{slack_date(incident.updated_at)}",
        SECTION_MAX,
    )


def incidents_blocks(which: Which, incidents: Sequence[Incident], *, limit: int) -> list[Block]:
    head = f"*{WHICH_TEXT[which]}*"
    if not incidents:
        return [el.section(f"{head}\nNone. :dog:")]
    more = f" (the first {limit})" if len(incidents) >= limit else ""
    blocks: list[Block] = [el.context(f"{head} · {len(incidents)} shown{more}")]
    blocks += [el.section(incident_line(i)) for i in incidents[: MAX_BLOCKS - 1]]
    return blocks


def duration(value: timedelta | None) -> str:
    """``42s``, ``5m``, ``1h 12m``, ``2d 3h``; ``–`` for nothing to measure."""
    if value is None:
        return "–"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h {minutes % 60}m"
    return f"{days}d {hours % 24}h"


def _counts(counts: Mapping[str, int], names: Mapping[str, str] | None = None) -> str:
    if not counts:
        return "none"
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{escape((names or {}).get(k, k))} {n}" for k, n in ordered)


def stats_text(stats: Stats) -> str:
    """The whole report as mrkdwn (also the message's fallback text)."""
    days = (stats.until - stats.since) / timedelta(days=1)
    precision = stats.precision
    if precision.value is None:
        auto = f"no verdicts yet on the {precision.acted} incidents Fido acted on by itself"
    else:
        auto = (
            f"*{precision.value:.0%}* true positives ({precision.true_positives} of "
            f"{precision.judged} closed with a verdict; {precision.acted} acted on by itself)"
        )
    by_detector = ", ".join(
        f"{code(d)} {n}" for d, n in sorted(stats.alerts_by_detector.items(), key=lambda x: -x[1])
    )
    actions = [
        f"  {code(responder)}: {_counts(outcomes)}" for responder, outcomes in stats.actions.items()
    ]
    return truncate(
        "\n".join(
            [
                f"*Fido over the last {days:g} days* (since {slack_date(stats.since)})",
                f"*Alerts:* {stats.alerts}"
                + (f" ({by_detector})" if by_detector else "")
                + f" · {stats.suppressed_alerts} suppressed",
                f"*Incidents:* {stats.incidents} · {stats.open_incidents} still open",
                f"  by decision: {_counts(stats.by_decision, DECISION_TEXT)}",
                f"  by verdict: {_counts(stats.by_verdict, VERDICT_TEXT)}",
                f"*Actions:* {sum(sum(o.values()) for o in stats.actions.values())}",
                *actions,
                f"*Mean time* to acknowledge {duration(stats.to_acknowledge)} · to approve "
                f"{duration(stats.to_approve)} · to contain {duration(stats.to_contain)}",
                f"*Auto-action precision:* {auto}",
            ]
        ),
        SECTION_MAX,
    )


def stats_blocks(stats: Stats) -> list[Block]:
    return [
        HeaderBlock(text=PlainTextObject(text="Fido statistics")),
        el.section(stats_text(stats)),
        el.context("Times run from an incident's first alert; precision comes from verdicts."),
    ]
