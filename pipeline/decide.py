"""Decide: record, notify, ask for approval, or act automatically — and on whom.

Safety first: protected and privileged accounts are never proposed; automatic action is
opt-in (``thresholds.auto_act``), and falls back to asking when enrichment is degraded,
when the hourly blast-radius cap is reached, or in dry-run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.enrich import facts_for
from pipeline.models import Decision, Incident
from pipeline.observables import Kind, Observables, account_name, unsafe_characters
from pipeline.policy import Policy
from pipeline.records import Proposal, enrichment_of

# How far a decision goes; a later triage never moves an incident down this scale.
RANK = {Decision.record: 0, Decision.notify: 1, Decision.ask_approval: 2, Decision.auto_act: 3}


class Targets(Protocol):
    """What decide needs of a responder: the kind of observable it acts on."""

    @property
    def target_kind(self) -> Kind: ...


@dataclass
class Verdict:
    decision: Decision
    reason: str
    proposed: list[Proposal] = field(default_factory=list)


def propose(
    incident: Incident, policy: Policy, responders: Mapping[str, Targets]
) -> tuple[list[Proposal], list[str]]:
    """Containment actions the policy allows on this incident, and why others were not."""
    proposed: list[Proposal] = []
    skipped: list[str] = []
    enrichment = enrichment_of(incident.enrichment)
    observables = Observables.model_validate(incident.observables)
    for rule in policy.actions:
        responder = responders.get(rule.responder)
        if responder is None:
            continue
        seen: set[str] = set()
        for target in observables.of(responder.target_kind):
            facts = facts_for(enrichment, Observables.key(responder.target_kind, target))
            same = str(facts.get("account") or target).casefold()
            if responder.target_kind == "user":
                same = account_name(same)
            if same in seen:
                continue  # one account named in several forms is proposed once
            seen.add(same)
            if (unsafe := unsafe_characters(target)) is not None:
                skipped.append(f"{target!r} {unsafe}")  # a look-alike: never a target
            elif policy.is_protected(target) or policy.is_protected(str(facts.get("account", ""))):
                skipped.append(f"{target} is a protected account")
            elif facts.get("privileged") and not policy.allow_privileged_targets:
                skipped.append(f"{target} is privileged")
            elif rule.require_directory_match and not facts.get("found"):
                skipped.append(f"{target} is not in the directory")
            elif facts.get("disabled"):
                skipped.append(f"{target} is already disabled")
            else:
                proposed.append(Proposal(responder=rule.responder, target=target))
    return proposed, skipped


def decide(
    incident: Incident,
    policy: Policy,
    responders: Mapping[str, Targets],
    *,
    auto_actions_last_hour: int = 0,
) -> Verdict:
    limits = policy.thresholds
    if incident.suppressed_by:
        return Verdict(Decision.record, f"suppressed by {incident.suppressed_by}")
    if incident.score < limits.notify:
        return Verdict(Decision.record, f"score {incident.score} is below {limits.notify}")
    proposed, skipped = propose(incident, policy, responders)
    why_not = f" ({'; '.join(skipped)})" if skipped else ""
    if incident.score < limits.ask_approval:
        return Verdict(Decision.notify, f"score {incident.score} is below {limits.ask_approval}")
    if not proposed:
        return Verdict(Decision.notify, f"no containment target{why_not}")
    if limits.auto_act is not None and incident.score >= limits.auto_act:
        if incident.degraded:
            reason = "enrichment is degraded, so asking instead of acting"
        elif policy.dry_run:
            reason = "dry-run is on, so asking instead of acting"
        elif auto_actions_last_hour + len(proposed) > policy.max_auto_actions_per_hour:
            reason = (
                f"the cap of {policy.max_auto_actions_per_hour} automatic actions per hour "
                "is reached, so asking instead of acting"
            )
        else:
            return Verdict(
                Decision.auto_act, f"score {incident.score} ≥ {limits.auto_act}{why_not}", proposed
            )
        return Verdict(Decision.ask_approval, reason + why_not, proposed)
    return Verdict(
        Decision.ask_approval, f"score {incident.score} ≥ {limits.ask_approval}{why_not}", proposed
    )
