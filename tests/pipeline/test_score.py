"""Golden tables for the score: given an incident's facts and history, the exact score and
every reason, in order. Each line names the fact that earned it in the source's words."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.models import Incident
from pipeline.policy import Policy, Scoring, ThreatWeights, UserWeights
from pipeline.records import History
from pipeline.score import score

HASH = "44d88612fea8a8f36de82e1278abb02f"
EXT_IP = "203.0.113.9"


def incident(
    *,
    severity: str = "high",
    detectors: list[str] | None = None,
    events: int = 1,
    observables: dict[str, list[str]] | None = None,
    enrichment: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> Incident:
    return Incident(
        id=1,
        title="t",
        severity=severity,
        event_count=events,
        detectors=detectors or ["generic"],
        observables=observables or {},
        enrichment={
            name: {"status": "ok", "facts": facts, "error": None}
            for name, facts in (enrichment or {}).items()
        },
    )


VT_MALICIOUS = {"verdict": "malicious", "detection_ratio": "60/70"}
VT_CLEAN = {"verdict": "clean", "detection_ratio": "0/70"}

CASES: list[tuple[str, Incident, History, int, list[tuple[int, str]]]] = [
    (
        "malicious hash on a crown-jewel host",
        incident(
            observables={"hosts": ["crown-db-01"], "hashes": [HASH]},
            enrichment={
                "virustotal": {f"hash:{HASH}": VT_MALICIOUS},
                "asset_inventory": {"host:crown-db-01": {"criticality": "crown-jewel"}},
            },
        ),
        History(),
        80,
        [
            (40, "severity high"),
            (25, "hash 44d8… is malicious on VirusTotal (60/70 engines)"),
            (15, "host crown-db-01 is crown-jewel in the asset inventory"),
        ],
    ),
    (
        "the same alert with a clean hash on a spare laptop",
        incident(
            observables={"hosts": ["spare-07"], "hashes": [HASH]},
            enrichment={
                "virustotal": {f"hash:{HASH}": VT_CLEAN},
                "asset_inventory": {"host:spare-07": {"criticality": "low"}},
            },
        ),
        History(),
        40,
        [(40, "severity high")],
    ),
    (
        "threat capped: critical, two malicious indicators",
        incident(
            severity="critical",
            observables={"hashes": [HASH], "ips": [EXT_IP]},
            enrichment={
                "virustotal": {f"hash:{HASH}": VT_MALICIOUS},
                "abuseipdb": {f"ip:{EXT_IP}": {"verdict": "malicious", "abuse_confidence": 100}},
            },
        ),
        History(),
        70,
        [
            (60, "severity critical"),
            (25, "hash 44d8… is malicious on VirusTotal (60/70 engines)"),
            (25, f"ip {EXT_IP} is malicious on AbuseIPDB (abuse confidence 100%)"),
            (-40, "threat capped at 70"),
        ],
    ),
    (
        "sources agreeing on one indicator are named together; benign lowers",
        incident(
            severity="medium",
            observables={"ips": [EXT_IP, "198.51.100.1"]},
            enrichment={
                "abuseipdb": {f"ip:{EXT_IP}": {"verdict": "suspicious", "abuse_confidence": 40}},
                "greynoise": {
                    f"ip:{EXT_IP}": {"verdict": "suspicious", "classification": "unknown"},
                    "ip:198.51.100.1": {"verdict": "benign", "riot": True, "name": "Google"},
                },
            },
        ),
        History(),
        25,
        [
            (25, "severity medium"),
            (
                10,
                f"ip {EXT_IP} is suspicious on AbuseIPDB (abuse confidence 40%) "
                "and GreyNoise (classified unknown)",
            ),
            (-10, "ip 198.51.100.1 is benign on GreyNoise (known service Google)"),
        ],
    ),
    (
        "pending, withheld and errors earn nothing",
        incident(
            observables={"hashes": [HASH], "ips": ["10.0.0.5"]},
            enrichment={
                "virustotal": {f"hash:{HASH}": {"pending": True}, "ip:10.0.0.5": {"withheld": "x"}}
            },
        ),
        History(),
        40,
        [(40, "severity high")],
    ),
    (
        "an indicator seen before (capped per indicator)",
        incident(severity="low", detectors=["suricata"], observables={"ips": [EXT_IP]}),
        History(detectors=["suricata"], sightings={f"ip:{EXT_IP}": 5}),
        19,
        [(10, "severity low"), (9, f"ip {EXT_IP} was seen in 5 earlier incidents")],
    ),
    (
        "unmanaged, unencrypted machine in the PCI zone (Jamf and the inventory)",
        incident(
            severity="medium",
            observables={"hosts": ["mac-17"]},
            enrichment={
                "jamf": {"host:mac-17": {"managed": False, "encrypted": False}},
                "asset_inventory": {"host:mac-17": {"zone": "PCI"}},
            },
        ),
        History(),
        45,
        [
            (25, "severity medium"),
            (10, "host mac-17 is in zone PCI in the asset inventory"),
            (5, "host mac-17 is unmanaged in Jamf"),
            (5, "host mac-17 is unencrypted in Jamf"),
        ],
    ),
    (
        "a privileged VIP with a true-positive history (user capped); one account once",
        incident(
            severity="low",
            observables={"users": ["CORP\\jdoe", "jdoe@corp.example"]},
            enrichment={
                "active_directory": {
                    "user:CORP\\jdoe": {
                        "found": True,
                        "account": "jdoe",
                        "privileged": True,
                        "privileged_groups": ["Domain Admins"],
                        "title": "Chief Financial Officer",
                    },
                    "user:jdoe@corp.example": {"found": True, "account": "jdoe"},
                }
            },
        ),
        History(user_verdicts={"jdoe": {"true_positive": 1}}),
        40,
        [
            (10, "severity low"),
            (10, "user CORP\\jdoe is a real account in Active Directory"),
            (15, "user CORP\\jdoe is privileged (Domain Admins)"),
            (10, 'user CORP\\jdoe is a VIP by title "Chief Financial Officer"'),
            (10, "user CORP\\jdoe had 1 earlier true-positive incident"),
            (-15, "user capped at 30"),
        ],
    ),
    (
        "earlier false positives lower the user's score",
        incident(observables={"users": ["bob"]}),
        History(user_verdicts={"bob": {"false_positive": 2, "benign": 1}}),
        25,
        [
            (40, "severity high"),
            (-15, "user bob had 3 earlier false-positive or benign incidents"),
        ],
    ),
    (
        "three detectors, more events, a repeat past 12 h (correlation capped)",
        incident(
            severity="medium",
            detectors=["crowdstrike", "suricata", "okta"],
            events=5,
            observables={"users": ["alice"]},
        ),
        History(detectors=["crowdstrike", "suricata", "okta"], repeat_hours=13.5),
        50,
        [
            (25, "severity medium"),
            (20, "3 detectors agree: crowdstrike, suricata, okta"),
            (9, "4 more related events"),
            (10, "the same alert has recurred for 13.5 h (≥ 12 h)"),
            (-14, "correlation capped at 25"),
        ],
    ),
    (
        "a repeat past 4 h only",
        incident(severity="informational"),
        History(repeat_hours=5),
        5,
        [(5, "the same alert has recurred for 5 h (≥ 4 h)")],
    ),
]


@pytest.mark.parametrize(
    ("case", "subject", "history", "total", "lines"), CASES, ids=[c[0] for c in CASES]
)
def test_golden(
    case: str, subject: Incident, history: History, total: int, lines: list[tuple[int, str]]
) -> None:
    got, breakdown = score(subject, Policy(), history)
    assert [(line.points, line.reason) for line in breakdown] == lines
    assert got == total == sum(line.points for line in breakdown)


def test_a_detector_base_from_the_policy() -> None:
    noisy = Policy(scoring=Scoring(threat=ThreatWeights(detector_base={"suricata": -10})))
    total, lines = score(incident(severity="low", detectors=["suricata"]), noisy, History())
    assert [(x.points, x.reason) for x in lines] == [
        (10, "severity low"),
        (-10, "alerts from suricata carry a base of -10"),
    ]
    assert total == 0


def test_clamped_to_100_and_floored_at_0() -> None:
    loud = Policy(
        scoring=Scoring(threat=ThreatWeights(cap=100, severity={"critical": 100}, seen_before=0))
    )
    total, lines = score(incident(severity="critical", events=3), loud, History())
    assert total == 100 and lines[-1].reason == "capped at 100"
    quiet = Policy(scoring=Scoring(user=UserWeights(earlier_false_positive=-30)))
    total, lines = score(
        incident(severity="informational", observables={"users": ["bob"]}),
        quiet,
        History(user_verdicts={"bob": {"false_positive": 1}}),
    )
    assert total == 0 and [(x.points, x.reason) for x in lines][-1] == (30, "floored at 0")


def test_malicious_on_crown_jewel_outscores_clean_on_spare_laptop_by_20() -> None:
    bad, good = CASES[0][1], CASES[1][1]
    assert score(bad, Policy(), History())[0] - score(good, Policy(), History())[0] >= 20


def test_a_failed_source_earns_nothing() -> None:
    subject = incident(observables={"hashes": [HASH]})
    subject.enrichment = {
        "virustotal": {"status": "error", "facts": {f"hash:{HASH}": VT_MALICIOUS}, "error": "x"}
    }
    assert score(subject, Policy(), History())[0] == 40


def test_the_stored_history_is_used_when_none_is_given() -> None:
    subject = incident(severity="informational")
    subject.history = History(repeat_hours=12).model_dump()
    assert score(subject, Policy())[0] == 10
