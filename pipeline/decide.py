"""Decide: record, notify, ask for approval, or act automatically — and on whom.

Safety first: protected accounts and look-alike targets are never proposed. Privileged and
VIP targets, and actions the policy marks high impact (``two_person``), are proposed for
two distinct approvers and never run automatically. Automatic action is opt-in
(``thresholds.auto_act``, and ``auto`` per action rule), and falls back to asking when
enrichment is degraded, in dry-run, while an approver has paused automation, past the
hourly caps (all responders, and per responder), or when the responder's cap has tripped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pipeline.controls import Switches
from pipeline.enrich import facts_for
from pipeline.models import Decision, Incident
from pipeline.observables import Kind, Observables, account_name, unsafe_characters
from pipeline.policy import ActionPolicy, Policy
from pipeline.records import Proposal, enrichment_of, proposals_of
from pipeline.score import vip_reason

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
    proposed: list[Proposal] = field(default_factory=list)  # every Approve button
    automatic: list[Proposal] = field(default_factory=list)  # run now, without asking
    trip: dict[str, int] = field(default_factory=dict)  # responders past their cap: count


@dataclass(frozen=True)
class Brakes:
    """What may stop automatic action beyond the incident itself (read by triage)."""

    auto_actions_last_hour: int = 0  # ran, running or queued
    by_responder: Mapping[str, int] = field(default_factory=dict)  # the same, since a reset
    switches: Switches = field(default_factory=Switches)

    def counting(self, queued: Sequence[Proposal], tripped: Iterable[str]) -> Brakes:
        """These brakes once ``queued`` are queued and ``tripped`` tripped: what the next
        incident of the same triage batch is decided under."""
        counts = dict(self.by_responder)
        for proposal in queued:
            counts[proposal.responder] = counts.get(proposal.responder, 0) + 1
        switches = replace(self.switches, tripped=self.switches.tripped | frozenset(tripped))
        return Brakes(self.auto_actions_last_hour + len(queued), counts, switches)


def two_person(rule: ActionPolicy) -> bool:
    """Whether the policy marks this action high impact: two approvers for every target."""
    return rule.two_person


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
            elif rule.require_directory_match and not facts.get("found"):
                skipped.append(f"{target} is not in the directory")
            elif facts.get("disabled"):
                skipped.append(f"{target} is already disabled")
            else:
                # privileged and VIP people are contained only when two people agree
                sensitive = responder.target_kind == "user" and (
                    (facts.get("privileged") and not policy.allow_privileged_targets)
                    or vip_reason(account_name(target), facts, policy.scoring.user) is not None
                )
                proposed.append(
                    Proposal(
                        responder=rule.responder,
                        target=target,
                        two_person=bool(sensitive) or two_person(rule),
                    )
                )
    return proposed, skipped


def _automatic(
    proposed: list[Proposal], policy: Policy, brakes: Brakes, already: set[tuple[str, str]]
) -> tuple[list[Proposal], list[str], dict[str, int]]:
    """The proposals that may run without asking, why the others may not, and the
    responders that this incident takes past their hourly cap. Those in ``already`` (queued
    by an earlier triage of this incident) stay automatic and are not counted again."""
    automatic: list[Proposal] = []
    held: list[str] = []
    trip: dict[str, int] = {}
    counts = dict(brakes.by_responder)
    for proposal in proposed:
        rule = policy.rule(proposal.responder)
        what = f"{proposal.responder} on {proposal.target}"
        if (proposal.responder, proposal.target) in already and not proposal.two_person:
            automatic.append(proposal)
        elif proposal.two_person:
            held.append(f"{what} needs two approvers")
        elif not rule.auto:
            held.append(f"{what} always asks")
        elif proposal.responder in brakes.switches.tripped:
            held.append(f"{proposal.responder} is past its hourly cap until an approver resets it")
        elif rule.max_auto_per_hour is not None and (
            counts.get(proposal.responder, 0) + 1 > rule.max_auto_per_hour
        ):
            trip[proposal.responder] = counts.get(proposal.responder, 0) + 1
            held.append(
                f"{proposal.responder} reached its cap of {rule.max_auto_per_hour} "
                "automatic actions per hour"
            )
        else:
            counts[proposal.responder] = counts.get(proposal.responder, 0) + 1
            automatic.append(proposal)
    return automatic, held, trip


def decide(
    incident: Incident,
    policy: Policy,
    responders: Mapping[str, Targets],
    *,
    brakes: Brakes | None = None,
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
        brakes = brakes or Brakes()
        already = {
            (p.responder, p.target) for p in proposals_of(incident.proposed_actions) if p.automatic
        }
        automatic, held, trip = _automatic(proposed, policy, brakes, already)
        fresh = [p for p in automatic if (p.responder, p.target) not in already]
        if incident.degraded:
            reason = "enrichment is degraded, so asking instead of acting"
        elif policy.dry_run:
            reason = "dry-run is on, so asking instead of acting"
        elif brakes.switches.paused:
            reason = f"automatic action is paused by <@{brakes.switches.paused_by}>, so asking"
        elif manual := [
            d for d in incident.detectors if (rule := policy.detectors.get(d)) and not rule.auto_act
        ]:
            reason = f"{', '.join(manual)} alerts never act automatically, so asking"
        elif brakes.auto_actions_last_hour + len(fresh) > policy.max_auto_actions_per_hour:
            reason = (
                f"the cap of {policy.max_auto_actions_per_hour} automatic actions per hour "
                "is reached, so asking instead of acting"
            )
        elif not automatic:
            reason = f"asking: {'; '.join(held)}"
            return Verdict(Decision.ask_approval, reason + why_not, proposed, trip=trip)
        else:
            also = f"; asking for the rest: {'; '.join(held)}" if held else ""
            return Verdict(
                Decision.auto_act,
                f"score {incident.score} ≥ {limits.auto_act}{also}{why_not}",
                proposed,
                automatic=automatic,
                trip=trip,
            )
        return Verdict(Decision.ask_approval, reason + why_not, proposed)
    return Verdict(
        Decision.ask_approval, f"score {incident.score} ≥ {limits.ask_approval}{why_not}", proposed
    )
