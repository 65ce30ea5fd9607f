"""Score: 0–100 from everything Fido knows, every point with its reason.

Four components, FIDO's threat, machine and user scores plus correlation, each summed from
its lines and capped by the policy (``scoring.<component>.cap``); the components are added
and clamped to 0–100. Cap and clamp are lines of their own, so a breakdown always sums to
the score. Reasons name the fact that earned them in the source's words, e.g.
``+25 hash 44d8… is malicious on VirusTotal (60/70 engines)``. See docs/scoring.md.

- **threat** — the alert's severity, a per-detector base, each indicator's strongest
  threat-intelligence verdict (malicious, suspicious, or benign which subtracts), how
  many earlier incidents carried the indicator, and what the affected user answered when
  asked "was this you?" (no, yes, or no answer in time);
- **asset** — each host's (or internal address's) criticality and zone from the asset
  inventory or Jamf, and a machine that is unmanaged or unencrypted;
- **user** — a real directory account, privileged, a VIP (listed, or by title or
  department), and how the user's earlier incidents were closed;
- **correlation** — other detectors agreeing, more events, and the same alert recurring
  over FIDO's repeat windows.

Pure: it reads the incident and the :class:`~pipeline.records.History` gathered for it, so
the backtest re-scores stored incidents without touching any other table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.correlate import key_of
from pipeline.enrich import facts_for
from pipeline.models import Incident
from pipeline.observables import Observables, account_name
from pipeline.policy import Policy, UserWeights
from pipeline.records import (
    Component,
    Enrichment,
    FactState,
    History,
    ScoreLine,
    enrichment_of,
    fact_state,
    history_of,
)

SOURCE_NAMES = {
    "virustotal": "VirusTotal",
    "abuseipdb": "AbuseIPDB",
    "greynoise": "GreyNoise",
    "misp": "MISP",
    "jamf": "Jamf",
    "asset_inventory": "the asset inventory",
    "active_directory": "Active Directory",
    "static_directory": "the directory",
}
INDICATOR_KINDS = ("hash", "ip", "domain", "url")


def source_name(enricher: str) -> str:
    return SOURCE_NAMES.get(enricher, enricher)


def shown(kind: str, value: str) -> str:
    """An observable as a reason names it: hashes by their first four characters."""
    if kind == "hash" and len(value) > 8:
        return f"{value[:4]}…"
    return value if len(value) <= 60 else f"{value[:59]}…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _Lines:
    def __init__(self, component: Component) -> None:
        self.component = component
        self.items: list[ScoreLine] = []

    def add(self, points: int, reason: str) -> None:
        if points:
            self.items.append(ScoreLine(points=points, reason=reason, component=self.component))

    def capped(self, cap: int) -> list[ScoreLine]:
        total = sum(line.points for line in self.items)
        if total > cap:
            self.add(cap - total, f"{self.component.value} capped at {cap}")
        elif total < -cap:
            self.add(-cap - total, f"{self.component.value} floored at -{cap}")
        return self.items


def _detail(facts: Mapping[str, Any]) -> str:
    """The source's own figure behind a verdict, e.g. ``60/70 engines``."""
    if facts.get("detection_ratio"):
        return f"{facts['detection_ratio']} engines"
    if facts.get("abuse_confidence") is not None:
        return f"abuse confidence {facts['abuse_confidence']}%"
    if facts.get("riot"):
        return f"known service {facts['name']}" if facts.get("name") else "known service"
    if facts.get("classification"):
        return f"classified {facts['classification']}"
    if facts.get("events"):
        level = f", threat level {facts['threat_level']}" if facts.get("threat_level") else ""
        return f"{_plural(len(facts['events']), 'event')}{level}"
    return ""


def _threat(
    incident: Incident, enrichment: Enrichment, history: History, policy: Policy
) -> list[ScoreLine]:
    weights = policy.scoring.threat
    lines = _Lines(Component.threat)
    lines.add(weights.severity.get(incident.severity, 0), f"severity {incident.severity}")
    for detector in history.detectors or incident.detectors:
        base = weights.detector_base.get(detector, 0)
        lines.add(base, f"alerts from {detector} carry a base of {base:+d}")
    observables = Observables.model_validate(incident.observables)
    for kind in INDICATOR_KINDS:
        for value in observables.of(kind):  # type: ignore[arg-type]
            verdicts: list[tuple[int, str, str]] = []
            for name, result in enrichment.items():
                facts = result.facts.get(Observables.key(kind, value))  # type: ignore[arg-type]
                if not result.ok or not facts or fact_state(facts) is not FactState.answered:
                    continue
                verdict = str(facts.get("verdict") or "")
                if verdict in weights.verdicts:
                    verdicts.append((weights.verdicts[verdict], verdict, _says(name, facts)))
            if verdicts:
                positive = [v for v in verdicts if v[0] > 0]
                chosen = positive or verdicts
                points, verdict, _ = max(chosen, key=lambda v: abs(v[0]))
                sources = " and ".join(v[2] for v in chosen if v[1] == verdict)
                lines.add(points, f"{kind} {shown(kind, value)} is {verdict} on {sources}")
            seen = history.sightings.get(key_of(kind, value), 0)  # type: ignore[arg-type]
            if seen:
                lines.add(
                    min(seen * weights.seen_before, weights.max_seen_before),
                    f"{kind} {shown(kind, value)} was seen in {_plural(seen, 'earlier incident')}",
                )
    _answers(incident, policy, lines)
    return lines.capped(weights.cap)


def _answers(incident: Incident, policy: Policy, lines: _Lines) -> None:
    """What the affected users said when asked "was this you?" (``pipeline/ask.py``)."""
    rules = policy.ask_user
    answers = incident.user_answers or {}
    for user, answer in sorted(answers.items()):
        if answer == "no":
            lines.add(rules.no_points, f"user {user} says it was not them")
        elif answer == "yes":
            lines.add(rules.yes_points, f"user {user} confirmed it was them")
        elif answer == "no_answer":
            lines.add(
                rules.no_answer_points,
                f"user {user} did not answer within {rules.timeout_minutes:g} min",
            )


def _says(enricher: str, facts: Mapping[str, Any]) -> str:
    detail = _detail(facts)
    return source_name(enricher) + (f" ({detail})" if detail else "")


def _first(enrichment: Enrichment, key: str, fact: str) -> tuple[Any, str] | None:
    """The first source's answer for ``fact`` about ``key``, and that source's name."""
    for name, result in enrichment.items():
        facts = result.facts.get(key) or {}
        if result.ok and facts.get(fact) not in (None, ""):
            return facts[fact], source_name(name)
    return None


def _asset(incident: Incident, enrichment: Enrichment, policy: Policy) -> list[ScoreLine]:
    weights = policy.scoring.asset
    lines = _Lines(Component.asset)
    observables = Observables.model_validate(incident.observables)
    subjects = [("host", h) for h in observables.hosts] + [("ip", i) for i in observables.ips]
    for kind, value in subjects:
        key = Observables.key(kind, value)  # type: ignore[arg-type]
        found = _first(enrichment, key, "criticality")
        if found and (points := weights.criticality.get(str(found[0]).strip().casefold(), 0)):
            lines.add(points, f"{kind} {shown(kind, value)} is {found[0]} in {found[1]}")
        found = _first(enrichment, key, "zone")
        if found and (points := weights.zones.get(str(found[0]).strip().casefold(), 0)):
            lines.add(points, f"{kind} {shown(kind, value)} is in zone {found[0]} in {found[1]}")
        found = _first(enrichment, key, "managed")
        if found and found[0] is False:
            lines.add(weights.unmanaged, f"{kind} {shown(kind, value)} is unmanaged in {found[1]}")
        found = _first(enrichment, key, "encrypted")
        if found and found[0] is False:
            lines.add(
                weights.unencrypted, f"{kind} {shown(kind, value)} is unencrypted in {found[1]}"
            )
    return lines.capped(weights.cap)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.casefold()))


def vip_reason(account: str, facts: Mapping[str, Any], weights: UserWeights) -> str | None:
    """Why the user is a VIP, or None."""
    if account in {account_name(a) for a in weights.vip_accounts}:
        return "on the VIP list"
    for fact, rule in (("title", weights.vip_titles), ("department", weights.vip_departments)):
        text = facts.get(fact)
        if isinstance(text, str) and _words(text) & {w.casefold() for w in rule}:
            return f'a VIP by {fact} "{text}"'
    return None


def _user(
    incident: Incident, enrichment: Enrichment, history: History, policy: Policy
) -> list[ScoreLine]:
    weights = policy.scoring.user
    lines = _Lines(Component.user)
    observables = Observables.model_validate(incident.observables)
    seen: set[str] = set()
    for user in observables.users:
        facts = facts_for(enrichment, Observables.key("user", user))
        account = account_name(str(facts.get("account") or user))
        if account in seen:
            continue  # the same account named twice (alice, alice@corp, CORP\\alice)
        seen.add(account)
        if facts.get("found"):
            where = _first(enrichment, Observables.key("user", user), "found")
            lines.add(
                weights.in_directory,
                f"user {user} is a real account in {where[1] if where else 'the directory'}",
            )
        if facts.get("privileged"):
            groups = facts.get("privileged_groups") or []
            via = f" ({', '.join(str(g) for g in groups[:3])})" if groups else ""
            lines.add(weights.privileged, f"user {user} is privileged{via}")
        why = vip_reason(account, facts, weights)
        if why:
            lines.add(weights.vip, f"user {user} is {why}")
        verdicts = history.user_verdicts.get(account, {})
        real = verdicts.get("true_positive", 0)
        noise = verdicts.get("false_positive", 0) + verdicts.get("benign", 0)
        if real:
            lines.add(
                real * weights.earlier_true_positive,
                f"user {user} had {_plural(real, 'earlier true-positive incident')}",
            )
        if noise:
            lines.add(
                noise * weights.earlier_false_positive,
                f"user {user} had {_plural(noise, 'earlier false-positive or benign incident')}",
            )
    return lines.capped(weights.cap)


def _correlation(incident: Incident, history: History, policy: Policy) -> list[ScoreLine]:
    weights = policy.scoring.correlation
    lines = _Lines(Component.correlation)
    detectors = history.detectors or incident.detectors
    if len(detectors) > 1:
        lines.add(
            weights.per_other_detector * (len(detectors) - 1),
            f"{len(detectors)} detectors agree: {', '.join(detectors)}",
        )
    extra = max(incident.event_count - 1, 0)
    lines.add(
        min(extra * weights.per_extra_event, weights.max_extra_events),
        f"{_plural(extra, 'more related event')}",
    )
    reached = [h for h in weights.repeat_after_hours if history.repeat_hours >= h]
    if reached:
        window = max(reached)
        lines.add(
            weights.repeat_after_hours[window],
            f"the same alert has recurred for {history.repeat_hours:g} h (≥ {window:g} h)",
        )
    return lines.capped(weights.cap)


def score(
    incident: Incident, policy: Policy, history: History | None = None
) -> tuple[int, list[ScoreLine]]:
    """The incident's score and its breakdown (lines summing to it)."""
    history = history if history is not None else history_of(incident.history)
    enrichment = enrichment_of(incident.enrichment)
    lines: list[ScoreLine] = [
        *_threat(incident, enrichment, history, policy),
        *_asset(incident, enrichment, policy),
        *_user(incident, enrichment, history, policy),
        *_correlation(incident, history, policy),
    ]
    total = _sum(lines)
    if total > 100:
        lines.append(
            ScoreLine(points=100 - total, reason="capped at 100", component=Component.total)
        )
    elif total < 0:
        lines.append(ScoreLine(points=-total, reason="floored at 0", component=Component.total))
    return _sum(lines), lines


def _sum(lines: Iterable[ScoreLine]) -> int:
    return sum(line.points for line in lines)
