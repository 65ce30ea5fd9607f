"""Typed records: what the pipeline stores in an incident's JSON columns and what the Slack
layer, the CLI and the backtest read back. Nothing crosses from ``pipeline/`` to ``bot/`` as a
dict read by string keys.

- :class:`EnrichmentResult` — one enricher's answer for an incident: a status and the facts
  it found, filed under observable keys (``user:alice``, ``hash:44d8…``);
- :class:`FactState` — what one source's facts about one value amount to: an answer, or
  why there is none (pending, withheld, allowlisted, error, not found);
- :class:`ScoreLine` — one reason in the score's breakdown, with its component;
- :class:`Proposal` — a containment action Fido may take (responder, target);
- :class:`History` — what Fido knew from its own records when it scored, kept so a
  backtest re-scores exactly what was scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class EnrichmentStatus(StrEnum):
    ok = "ok"
    error = "error"
    timeout = "timeout"


Facts = dict[str, dict[str, Any]]


class EnrichmentResult(BaseModel):
    """One enricher's round on an incident. ``facts`` maps observable keys to what the
    enricher knows about that value (its own vocabulary, plus the states below)."""

    status: EnrichmentStatus = EnrichmentStatus.ok
    facts: Facts = Field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is EnrichmentStatus.ok


Enrichment = dict[str, EnrichmentResult]
_ENRICHMENT: TypeAdapter[Enrichment] = TypeAdapter(Enrichment)


def enrichment_of(raw: Mapping[str, Any] | None) -> Enrichment:
    """The typed form of an incident's ``enrichment`` column."""
    return _ENRICHMENT.validate_python(dict(raw or {}))


def dump_enrichment(results: Mapping[str, EnrichmentResult]) -> dict[str, Any]:
    return {name: result.model_dump(mode="json") for name, result in results.items()}


class FactState(StrEnum):
    """Why a source has (or has not yet) an answer about a value."""

    answered = "answered"
    pending = "pending"  # waiting for the provider's quota; answered later
    withheld = "withheld"  # never sent: an internal value
    allowlisted = "allowlisted"
    error = "error"
    not_found = "not_found"


def fact_state(facts: Mapping[str, Any]) -> FactState:
    if facts.get("pending"):
        return FactState.pending
    if facts.get("withheld"):
        return FactState.withheld
    if facts.get("allowlisted"):
        return FactState.allowlisted
    if facts.get("error"):
        return FactState.error
    if facts.get("found") is False:
        return FactState.not_found
    return FactState.answered


class IndicatorVerdict(StrEnum):
    """A threat-intelligence source's opinion of an indicator."""

    malicious = "malicious"
    suspicious = "suspicious"
    benign = "benign"  # a known-good service or a benign internet scanner
    clean = "clean"  # looked at, nothing found
    unknown = "unknown"


class Component(StrEnum):
    """The four capped parts of a score (FIDO's threat, machine and user scores, plus
    correlation)."""

    threat = "threat"
    asset = "asset"
    user = "user"
    correlation = "correlation"
    total = "total"  # the 0–100 clamp


class ScoreLine(BaseModel):
    """``points`` earned for ``reason``; a breakdown's lines sum to the score."""

    model_config = ConfigDict(frozen=True)

    points: int
    reason: str
    component: Component = Component.threat

    def text(self) -> str:
        return f"{self.points:+d} {self.reason}"


_LINES: TypeAdapter[list[ScoreLine]] = TypeAdapter(list[ScoreLine])


def breakdown_of(raw: Iterable[Mapping[str, Any]] | None) -> list[ScoreLine]:
    return _LINES.validate_python(list(raw or []))


def dump_breakdown(lines: Iterable[ScoreLine]) -> list[dict[str, Any]]:
    return [line.model_dump(mode="json") for line in lines]


def top_reasons(lines: Iterable[ScoreLine], n: int = 5) -> list[ScoreLine]:
    """The ``n`` lines that moved the score most, caps excluded, strongest first."""
    caps = ("capped", "floored")  # "threat capped at 70", and the total's "capped at 100"
    real = [li for li in lines if not li.reason.removeprefix(f"{li.component} ").startswith(caps)]
    return sorted(real, key=lambda line: -abs(line.points))[:n]


class Proposal(BaseModel):
    """A containment action the policy allows on an incident."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    responder: str
    target: str
    two_person: bool = False  # runs only after two distinct approvers, never automatically
    automatic: bool = False  # queued to run without asking: it has no Approve button

    def same_action(self, other: Proposal) -> bool:
        """The same responder on the same target (whatever approval each needs)."""
        return (self.responder, self.target) == (other.responder, other.target)


_PROPOSALS: TypeAdapter[list[Proposal]] = TypeAdapter(list[Proposal])


def proposals_of(raw: Iterable[Mapping[str, Any]] | None) -> list[Proposal]:
    return _PROPOSALS.validate_python(list(raw or []))


def dump_proposals(proposals: Iterable[Proposal]) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json", exclude_defaults=True) for p in proposals]


class History(BaseModel):
    """Fido's own records about an incident's subjects, gathered when it was scored.

    - ``detectors``: the distinct detectors whose events are in the incident;
    - ``sightings``: per indicator key, how many earlier incidents (90 days, not closed as
      false positive or benign) carried it;
    - ``user_verdicts``: per account, earlier closed incidents by verdict;
    - ``repeat_hours``: how long this alert (same detector and title, same subjects) has
      kept recurring, in hours; 0 for a first sighting;
    - ``quiet_repeat``: the event repeats one seen within the quiet window, so the card is
      updated without paging again.
    """

    detectors: list[str] = Field(default_factory=list)
    sightings: dict[str, int] = Field(default_factory=dict)
    user_verdicts: dict[str, dict[str, int]] = Field(default_factory=dict)
    repeat_hours: float = 0.0
    quiet_repeat: bool = False


def history_of(raw: Mapping[str, Any] | None) -> History:
    return History.model_validate(dict(raw or {}))
