"""Routing: channels per severity, detector, score band and team (first rule wins), the
digest threshold, and the policy refusing bad routing settings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.models import Incident
from pipeline.policy import Policy
from pipeline.routing import PAYLOAD, Digest, Note, ThreadUpdate, channel_for, individual

RULES: list[dict[str, Any]] = [
    {"channel": "C0CRIT", "severities": ["critical"]},
    {"channel": "C0EDR", "detectors": ["crowdstrike", "sentinelone"], "min_score": 50},
    {"channel": "C0PAY", "teams": ["Payments"]},
    {"channel": "C0LOW", "max_score": 29},
]
POLICY = Policy(routing={"default": "C0SOC", "rules": RULES})


def incident(**fields: Any) -> Incident:
    base: dict[str, Any] = {"title": "t", "severity": "medium", "score": 40, "detectors": ["x"]}
    return Incident(**{**base, **fields})


def team(name: str) -> dict[str, Any]:
    facts = {"user:bob": {"found": True, "department": name}}
    return {"active_directory": {"status": "ok", "facts": facts}}


@pytest.mark.parametrize(
    ("fields", "channel"),
    [
        ({"severity": "critical", "score": 10}, "C0CRIT"),
        ({"detectors": ["suricata", "crowdstrike"], "score": 50}, "C0EDR"),
        ({"detectors": ["crowdstrike"], "score": 49}, "C0SOC"),  # below the band
        ({"observables": {"users": ["bob"]}, "enrichment": team("payments ")}, "C0PAY"),
        ({"observables": {"users": ["bob"]}, "enrichment": team("Sales")}, "C0SOC"),
        ({"score": 29}, "C0LOW"),
        ({"score": 30}, "C0SOC"),
    ],
)
def test_the_first_matching_rule_routes(fields: dict[str, Any], channel: str) -> None:
    assert channel_for(incident(**fields), POLICY) == channel


def test_without_rules_the_settings_channel_is_used() -> None:
    assert channel_for(incident(severity="critical"), Policy()) is None


@pytest.mark.parametrize(
    ("fields", "alone"),
    [
        ({"score": 24, "decision": "notify"}, False),  # the digest's
        ({"score": 25, "decision": "notify"}, True),
        ({"score": 5, "decision": "record"}, False),
        ({"score": 10, "decision": "ask_approval"}, True),  # approval always gets a card
        ({"score": 10, "decision": "notify", "message_ts": "1.2"}, True),  # posted: updated
    ],
)
def test_low_scores_go_to_the_digest(fields: dict[str, Any], alone: bool) -> None:
    assert individual(incident(**fields), Policy()) is alone


@pytest.mark.parametrize(
    "bad",
    [
        {"routing": {"rules": [{"severities": ["high"]}]}},  # no channel
        {"routing": {"rules": [{"channel": "C1", "min_score": 101}]}},
        {"routing": {"nowhere": "C1"}},
        {"digest": {"interval_minutes": 0}},
        {"approval_sla": {"group": "not-a-group"}},
        {"approval_sla": {"on_timeout": "approve"}},
        {"ask_user": {"yes_points": 5}},
    ],
)
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Policy(**bad)


def test_message_payloads_round_trip() -> None:
    for payload in (
        ThreadUpdate(),
        Digest(items=[], more=3),
        Note(what="reminder", incident_id=4, group="SABC", minutes=0.5),
    ):
        assert PAYLOAD.validate_python(payload.model_dump(mode="json")) == payload
    with pytest.raises(ValidationError):
        PAYLOAD.validate_python({"type": "shout"})
