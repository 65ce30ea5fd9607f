from __future__ import annotations

from typing import Any

import pytest

from pipeline.controls import Switches
from pipeline.decide import Brakes, decide
from pipeline.models import Decision, Incident
from pipeline.policy import ActionPolicy, DetectorPolicy, Policy, Thresholds
from pipeline.records import EnrichmentResult, Proposal
from pipeline.score import score
from tests.pipeline.fakes import LockResponder

RESPONDERS = {"test_lock": LockResponder()}


def incident(
    severity: str = "critical",
    users: list[str] | None = None,
    facts: dict[str, dict[str, Any]] | None = None,
    events: int = 1,
    degraded: bool = False,
) -> Incident:
    return Incident(
        id=1,
        title="t",
        severity=severity,
        event_count=events,
        degraded=degraded,
        observables={"users": users or []},
        enrichment={"dir": {"status": "ok", "facts": facts or {}, "error": None}},
    )


def policy(**kw: Any) -> Policy:
    kw.setdefault("actions", [ActionPolicy(responder="test_lock")])
    return Policy(**kw)


def scored(i: Incident, p: Policy) -> Incident:
    i.score, _ = score(i, p)
    return i


def test_a_suppressed_incident_is_only_recorded() -> None:
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}), policy())
    i.suppressed_by = "policy:noisy"
    verdict = decide(i, policy(), RESPONDERS)
    assert verdict.decision is Decision.record and verdict.proposed == []
    assert verdict.reason == "suppressed by policy:noisy"


def test_default_policy_asks_approval_for_critical_alert_about_directory_user() -> None:
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}), policy())
    verdict = decide(i, policy(), RESPONDERS)
    assert i.score == 70
    assert verdict.decision is Decision.ask_approval
    assert verdict.proposed == [Proposal(responder="test_lock", target="alice")]


def test_default_policy_never_auto_acts() -> None:
    assert Policy().thresholds.auto_act is None
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}, events=5), policy())
    assert decide(i, policy(), RESPONDERS).decision is Decision.ask_approval


def test_high_alert_only_notifies() -> None:
    i = scored(
        incident(severity="high", users=["alice"], facts={"user:alice": {"found": True}}), policy()
    )
    assert decide(i, policy(), RESPONDERS).decision is Decision.notify


def test_below_notify_threshold_is_recorded_only() -> None:
    p = policy(thresholds=Thresholds(notify=20))
    i = scored(incident(severity="low"), p)
    assert decide(i, p, RESPONDERS).decision is Decision.record


@pytest.mark.parametrize(
    ("user", "facts", "why"),
    [
        ("Administrator", {"found": True}, "protected"),
        ("ghost", {"found": False}, "not in the directory"),
        ("gone", {"found": True, "disabled": True}, "already disabled"),
    ],
)
def test_unsafe_targets_are_never_proposed(user: str, facts: dict, why: str) -> None:
    i = scored(incident(users=[user], facts={f"user:{user}": facts}), policy())
    i.score = 99
    verdict = decide(i, policy(), RESPONDERS)
    assert verdict.decision is Decision.notify
    assert verdict.proposed == []
    assert why in verdict.reason


def auto_policy(**kw: Any) -> Policy:
    return policy(thresholds=Thresholds(ask_approval=60, auto_act=70), **kw)


def test_auto_act_above_opt_in_threshold() -> None:
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}), auto_policy())
    assert decide(i, auto_policy(), RESPONDERS).decision is Decision.auto_act


@pytest.mark.parametrize(
    ("kw", "degraded", "recent", "why"),
    [
        ({}, True, 0, "degraded"),
        ({"dry_run": True}, False, 0, "dry-run"),
        ({"max_auto_actions_per_hour": 2}, False, 2, "cap of 2"),
    ],
)
def test_auto_act_falls_back_to_asking(kw: dict, degraded: bool, recent: int, why: str) -> None:
    p = auto_policy(**kw)
    i = scored(
        incident(users=["alice"], facts={"user:alice": {"found": True}}, degraded=degraded), p
    )
    verdict = decide(i, p, RESPONDERS, brakes=Brakes(auto_actions_last_hour=recent))
    assert verdict.decision is Decision.ask_approval
    assert why in verdict.reason


def test_auto_act_threshold_below_ask_is_rejected() -> None:
    with pytest.raises(ValueError, match="auto_act"):
        Thresholds(ask_approval=80, auto_act=70)


def test_one_account_in_several_forms_scores_and_is_proposed_once() -> None:
    users = ["alice", "alice@corp.test", "CORP\\alice"]
    facts = {f"user:{u}": {"found": True, "account": "alice"} for u in users}
    i = scored(incident(users=users, facts=facts), policy())
    assert i.score == 70  # the account counted once
    assert decide(i, policy(), RESPONDERS).proposed == [
        Proposal(responder="test_lock", target="alice")
    ]


@pytest.mark.parametrize("form", ["CORP\\Administrator", "administrator@corp.test", "KRBTGT"])
def test_protected_accounts_match_in_every_form(form: str) -> None:
    assert Policy().is_protected(form)


def test_a_source_not_knowing_a_user_does_not_hide_the_directory_knowing_it() -> None:
    from pipeline.enrich import facts_for

    enrichment = {
        "directory": EnrichmentResult(facts={"user:alice": {"found": True, "title": "CFO"}}),
        "other": EnrichmentResult(facts={"user:alice": {"found": False}}),
    }
    assert facts_for(enrichment, "user:alice") == {"found": True, "title": "CFO"}


@pytest.mark.parametrize(
    ("facts", "kw"),
    [
        ({"found": True, "privileged": True}, {}),
        ({"found": True, "title": "Chief Executive Officer"}, {}),
        ({"found": True}, {"two_person": True}),
    ],
)
def test_privileged_vip_and_high_impact_need_two_approvers_and_never_run_alone(
    facts: dict, kw: dict
) -> None:
    p = auto_policy(actions=[ActionPolicy(responder="test_lock", **kw)])
    i = scored(incident(users=["boss"], facts={"user:boss": facts}), p)
    i.score = 99
    verdict = decide(i, p, RESPONDERS)
    assert verdict.decision is Decision.ask_approval
    assert verdict.proposed == [Proposal(responder="test_lock", target="boss", two_person=True)]
    assert verdict.automatic == []
    assert "needs two approvers" in verdict.reason


def test_pause_makes_every_automatic_action_ask() -> None:
    p = auto_policy()
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}), p)
    paused = Brakes(switches=Switches(paused_by="UBOSS"))
    verdict = decide(i, p, RESPONDERS, brakes=paused)
    assert verdict.decision is Decision.ask_approval and verdict.automatic == []
    assert "paused by <@UBOSS>" in verdict.reason
    assert decide(i, p, RESPONDERS).automatic == verdict.proposed  # not paused: it acts


def test_a_responder_past_its_hourly_cap_trips_and_asks() -> None:
    p = auto_policy(actions=[ActionPolicy(responder="test_lock", max_auto_per_hour=3)])
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}), p)
    under = decide(i, p, RESPONDERS, brakes=Brakes(by_responder={"test_lock": 2}))
    assert under.decision is Decision.auto_act and under.trip == {}
    over = decide(i, p, RESPONDERS, brakes=Brakes(by_responder={"test_lock": 3}))
    assert over.decision is Decision.ask_approval
    assert over.trip == {"test_lock": 4}  # the 4th of a cap of 3: trip it
    tripped = Brakes(switches=Switches(tripped=frozenset({"test_lock"})))
    assert decide(i, p, RESPONDERS, brakes=tripped).decision is Decision.ask_approval


def test_an_action_rule_can_always_ask() -> None:
    p = auto_policy(actions=[ActionPolicy(responder="test_lock", auto=False)])
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}), p)
    verdict = decide(i, p, RESPONDERS)
    assert verdict.decision is Decision.ask_approval and "always asks" in verdict.reason


def test_a_detector_can_keep_its_incidents_from_acting_automatically() -> None:
    p = auto_policy(detectors={"generic": DetectorPolicy(), "okta": DetectorPolicy(auto_act=False)})
    i = scored(incident(users=["alice"], facts={"user:alice": {"found": True}}), p)
    i.detectors = ["generic"]
    assert decide(i, p, RESPONDERS).decision is Decision.auto_act
    i.detectors = ["generic", "okta"]
    verdict = decide(i, p, RESPONDERS)
    assert verdict.decision is Decision.ask_approval and verdict.automatic == []
    assert "okta alerts never act automatically" in verdict.reason
