"""The enrichment part of the incident card: who the user is, what the machine is, and
each indicator's verdict with a link — plus what is pending, withheld or failed.

Users and hosts get one section each, merging what every source said (the directory, the
asset inventory, Jamf); indicators (IPs, hashes, domains, URLs) get one line per source.
Everything is escaped; links are shown only when they are plain https URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from bot.slack.text import FIELD_MAX, SECTION_MAX, VALUE_MAX, code, escape, truncate
from pipeline.records import Enrichment, FactState, fact_state

MAX_SUBJECTS = 4  # user and host sections
MAX_INDICATOR_LINES = 20

USER_FACTS = (
    ("display_name", "Name"), ("account", "Account"), ("title", "Title"),
    ("department", "Department"), ("manager_name", "Manager"), ("mail", "Mail"),
    ("groups", "Groups"), ("privileged_groups", "Privileged via"), ("disabled", "Disabled"),
    ("locked", "Locked"), ("privileged", "Privileged"), ("last_logon", "Last logon"),
)  # fmt: skip
HOST_FACTS = (
    ("owner", "Owner"), ("assigned_user", "Assigned to"), ("criticality", "Criticality"),
    ("zone", "Zone"), ("os", "OS"), ("os_version", "OS version"), ("model", "Model"),
    ("ou", "OU"), ("filevault", "FileVault"), ("managed", "Managed"),
    ("last_check_in", "Last check-in"), ("last_logon", "Last logon"),
    ("description", "Description"),
)  # fmt: skip
VERDICT_EMOJI = {"malicious": "🔴", "suspicious": "🟠", "benign": "🟢", "clean": "🟢"}
# the one number that says most about an indicator, by the key a source uses for it
HEADLINES = (
    ("detection_ratio", "detections"), ("abuse_confidence", "abuse confidence"),
    ("classification", "GreyNoise"), ("threat_level", "MISP threat level"),
    ("popular_threat_label", "label"), ("owner", "owner"), ("criticality", "criticality"),
    ("zone", "zone"), ("assigned_user", "assigned to"),
)  # fmt: skip


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        shown = ", ".join(escape(truncate(str(v), 60)) for v in value[:5])
        return shown + (f" +{len(value) - 5} more" if len(value) > 5 else "")
    if isinstance(value, Mapping):
        return escape(truncate(", ".join(f"{k}: {v}" for k, v in value.items()), VALUE_MAX))
    return escape(truncate(str(value), VALUE_MAX))


def _link(url: Any, label: str) -> str:
    if isinstance(url, str) and url.startswith("https://") and not any(c in url for c in "|<> "):
        return f"<{url.replace('&', '&amp;')}|{escape(label)}>"
    return escape(label)


def _state(facts: Mapping[str, Any]) -> str | None:
    """A sentence for a value that has no answer (yet)."""
    state = fact_state(facts)
    if state is FactState.pending:
        return "⏳ pending (waiting for the provider's quota)"
    if state is FactState.withheld:
        return f"🔒 not sent ({escape(str(facts['withheld']))} value)"
    if state is FactState.allowlisted:
        return "✔️ allowlisted"
    if state is FactState.error:
        return f"⚠️ {escape(truncate(str(facts['error']), VALUE_MAX))}"
    if state is FactState.not_found:
        return "not found"
    return None


def _records(enrichment: Enrichment) -> dict[str, dict[str, dict[str, Any]]]:
    """{observable key: {source: facts}} from the sources that answered."""
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for source, result in enrichment.items():
        if not result.ok:
            continue
        for key, facts in result.facts.items():
            if isinstance(facts, Mapping):
                records.setdefault(key, {})[source] = dict(facts)
    return records


def _subject(key: str, by_source: dict[str, dict[str, Any]]) -> SectionBlock:
    kind, _, value = key.partition(":")
    known = {s: f for s, f in by_source.items() if _state(f) is None}
    sources = ", ".join(escape(s) for s in by_source)
    heading = f"*{escape(kind.capitalize())}* {code(value)} _({sources})_"
    if not known:
        states = "; ".join(f"{escape(s)}: {_state(f)}" for s, f in by_source.items())
        return _section(f"{heading}: {states}")
    merged: dict[str, Any] = {}
    for facts in known.values():
        for name, item in facts.items():
            merged.setdefault(name, item)
    wanted = USER_FACTS if kind == "user" else HOST_FACTS
    fields = [
        f"*{label}:* {_value(merged[name])}"
        for name, label in wanted
        if merged.get(name) not in (None, "", [], {})
    ]
    links = [_link(f.get("permalink"), s) for s, f in known.items() if f.get("permalink")]
    if links:
        fields.append("*Links:* " + " · ".join(links))
    return _section(heading, fields)


def _indicator_line(key: str, source: str, facts: Mapping[str, Any]) -> str:
    kind, _, value = key.partition(":")
    where = _link(facts.get("permalink") or facts.get("link"), source)
    state = _state(facts)
    if state is not None:
        return f"• {escape(kind)} {code(value)} — {where}: {state}"
    parts = []
    if facts.get("verdict"):
        verdict = str(facts["verdict"])
        parts.append(f"{VERDICT_EMOJI.get(verdict, '⚪')} *{escape(verdict)}*")
    for name, label in HEADLINES:
        if facts.get(name) not in (None, ""):
            parts.append(f"{label} {_value(facts[name])}")
    return f"• {escape(kind)} {code(value)} — {where}: " + (", ".join(parts) or "known")


def fact_sections(enrichment: Enrichment) -> list[SectionBlock]:
    """The card's enrichment sections (at most MAX_SUBJECTS + 2 blocks)."""
    records = _records(enrichment)
    subjects = [k for k in records if k.startswith(("user:", "host:"))]
    subjects.sort(key=lambda k: not k.startswith("user:"))  # users first, order kept
    blocks = [_subject(k, records[k]) for k in subjects[:MAX_SUBJECTS]]
    if len(subjects) > MAX_SUBJECTS:
        blocks.append(_section(f"_…and {len(subjects) - MAX_SUBJECTS} more users and hosts_"))
    lines = [
        _indicator_line(key, source, facts)
        for key, by_source in records.items()
        if not key.startswith(("user:", "host:"))
        for source, facts in by_source.items()
    ]
    if lines:
        shown = lines[:MAX_INDICATOR_LINES]
        if len(lines) > MAX_INDICATOR_LINES:
            shown.append(f"_…and {len(lines) - MAX_INDICATOR_LINES} more_")
        blocks.append(_section("*Indicators*\n" + "\n".join(shown)))
    return blocks


def _section(text: str, fields: list[str] | None = None) -> SectionBlock:
    return SectionBlock(
        text=MarkdownTextObject(text=truncate(text, SECTION_MAX)),
        fields=[MarkdownTextObject(text=truncate(f, FIELD_MAX)) for f in (fields or [])[:10]]
        or None,
    )
