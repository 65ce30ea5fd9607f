"""The incident card, built from in-memory rows and checked as the JSON Slack receives."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.slack.blocks import card_text, incident_card, render_text
from bot.slack.ids import (
    ACTION_ID_PATTERNS,
    ActionId,
    ButtonValue,
    IncidentValue,
    SuppressionValue,
    action_id_for,
    kind_of,
)
from bot.slack.suppression_blocks import suppressions_blocks
from pipeline.models import Action, CloseVerdict, Event, Incident
from pipeline.policy import SuppressionMatch
from pipeline.records import enrichment_of
from pipeline.suppress import ActiveSuppression

LABELS = {"ad_disable_account": "disable", "okta_clear_sessions": "end the sessions of"}
REVERSIBLE = frozenset({"ad_disable_account"})
EVIL = "<!channel> see <https://evil.example|your bank>"


def make_incident(**overrides: Any) -> Incident:
    fields: dict[str, Any] = dict(
        id=3,
        title="Impossible travel for alice",
        severity="critical",
        score=70,
        score_breakdown=[
            {"points": 60, "reason": "severity critical", "component": "threat"},
            {
                "points": 10,
                "reason": "user alice is a real account in Active Directory",
                "component": "user",
            },
        ],
        observables={
            "users": ["alice"],
            "hosts": ["ws-042"],
            "ips": ["203.0.113.9"],
            "hashes": [],
            "domains": [],
            "urls": [],
        },
        enrichment={
            "active_directory": {
                "status": "ok",
                "facts": {
                    "user:alice": {
                        "found": True,
                        "display_name": "Alice Example",
                        "account": "alice",
                        "title": "Accountant",
                        "department": "Finance",
                        "manager_name": "Bob Boss",
                        "mail": "alice@example.com",
                        "groups": ["Domain Users", "Finance", "VPN"],
                        "disabled": False,
                        "privileged": False,
                    },
                    "host:ws-042": {"os": "Windows 11", "last_seen": "2026-01-01"},
                },
                "error": None,
            }
        },
        decision="ask_approval",
        decision_reason="score 70 ≥ 70",
        proposed_actions=[{"responder": "ad_disable_account", "target": "alice"}],
        event_count=2,
        created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    fields.update(overrides)
    return Incident(**fields)


def make_action(**overrides: Any) -> Action:
    fields: dict[str, Any] = dict(
        id=12,
        incident_id=3,
        responder="ad_disable_account",
        target="alice",
        requested_by="U0ALICE",
        approved_by="U0ALICE",
        status="succeeded",
        result="Disabled CN=alice,OU=Staff,DC=example,DC=com",
        undo_data={"was_enabled": True},
        idempotency_key="3:ad_disable_account:alice",
        created_at=datetime(2026, 1, 2, 3, 5, tzinfo=UTC),
        updated_at=datetime(2026, 1, 2, 3, 6, tzinfo=UTC),
    )
    fields.update(overrides)
    return Action(**fields)


def make_event(n: int, **overrides: Any) -> Event:
    fields: dict[str, Any] = dict(
        id=n,
        detector="generic",
        external_id=f"e{n}",
        title=f"Impossible travel #{n}",
        severity="high",
        raw="{}",
        occurred_at=datetime(2026, 1, 2, 3, n % 60, tzinfo=UTC),
        received_at=datetime(2026, 1, 2, 4, 0, tzinfo=UTC),
        incident_id=3,
    )
    fields.update(overrides)
    return Event(**fields)


def card(
    incident: Incident, actions: list[Action] | None = None, **kw: Any
) -> list[dict[str, Any]]:
    # to_dict() runs slack_sdk's validators: lengths, element counts.
    kw.setdefault("reversible", REVERSIBLE)
    return [b.to_dict() for b in incident_card(incident, actions or [], labels=LABELS, **kw)]


def buttons(blocks: list[dict[str, Any]], *kinds: ActionId) -> list[dict[str, Any]]:
    """The card's buttons, or only those of ``kinds``."""
    found = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    return [e for e in found if not kinds or kind_of(e["action_id"]) in kinds]


APPROVE_DENY = (ActionId.APPROVE, ActionId.DENY)
CLOSE = ActionId.CLOSE


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts = []
    for block in blocks:
        objects = [block.get("text")] + block.get("fields", []) + block.get("elements", [])
        texts += [o["text"] for o in objects if isinstance(o, dict) and o.get("type") == "mrkdwn"]
    return texts


def test_card_shows_score_observables_facts_and_decision() -> None:
    blocks = card(make_incident())
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == "🔴 CRITICAL · Impossible travel for alice"
    text = "\n".join(mrkdwn_texts(blocks))
    assert "Incident #3 · 2 events" in text
    assert "*Score: 70/100* · top reasons" in text
    assert "+60 severity critical" in text
    assert "+10 user alice is a real account in Active Directory" in text
    assert "more: `/fido incident 3`" not in text  # two lines: nothing hidden
    assert "*Users:* `alice`" in text and "*IPs:* `203.0.113.9`" in text
    assert "Hashes" not in text and "Seen by" not in text  # empty kinds are left out
    seen = make_incident()
    seen.observables["observers"] = ["ids-sensor-01"]
    assert "*Seen by:* `ids-sensor-01`" in "\n".join(mrkdwn_texts(card(seen)))
    for fact in ("Alice Example", "Accountant", "Finance", "Bob Boss", "alice@example.com"):
        assert fact in text
    assert "*Groups:* Domain Users, Finance, VPN" in text
    assert "*OS:* Windows 11" in text
    assert "Approval needed — score 70 ≥ 70" in text
    assert "<!date^1767323040^{date_short_pretty} {time}|2026-01-02 03:04 UTC>" in text
    assert "Enrichment incomplete" not in text


def test_approve_and_deny_buttons_carry_a_button_value() -> None:
    approve, deny = buttons(card(make_incident()), *APPROVE_DENY)
    assert approve["text"]["text"] == "Approve: disable alice"
    assert approve["style"] == "danger"
    assert approve["confirm"]["confirm"]["text"] == "Approve"
    assert deny["text"]["text"] == "Deny"
    assert approve["action_id"] == "fido_approve:ad_disable_account:alice"
    assert ACTION_ID_PATTERNS[ActionId.APPROVE].search(approve["action_id"])
    assert not ACTION_ID_PATTERNS[ActionId.DENY].search(approve["action_id"])
    assert kind_of(deny["action_id"]) is ActionId.DENY
    for button in (approve, deny):
        value = ButtonValue.model_validate_json(button["value"])
        assert value.model_dump(exclude={"at"}) == ButtonValue(
            incident_id=3, responder="ad_disable_account", target="alice", v=0
        ).model_dump(exclude={"at"})
        assert value.at is not None and abs(value.at - time.time()) < 60  # when drawn


def test_a_two_person_proposal_says_so_on_its_button_and_in_the_dialog() -> None:
    proposals = [{"responder": "ad_disable_account", "target": "alice", "two_person": True}]
    approve, _ = buttons(card(make_incident(proposed_actions=proposals)), *APPROVE_DENY)
    assert approve["text"]["text"] == "Approve: disable alice (1 of 2)"
    assert "Two different approvers" in approve["confirm"]["text"]["text"]


def test_the_confirm_dialog_shows_the_responders_plan() -> None:
    blocks = incident_card(
        make_incident(),
        [],
        labels={"ad_disable_account": "disable"},
        plan=lambda responder, target, facts: (
            f"Disable CORP\\{target} ({facts.get('display_name')}) in Active Directory"
        ),
    )
    approve, _ = buttons([b.to_dict() for b in blocks], *APPROVE_DENY)
    assert approve["confirm"]["text"]["text"].startswith(
        "Disable CORP\\alice (Alice Example) in Active Directory"
    )


def test_each_proposal_gets_its_own_unique_buttons_and_default_label() -> None:
    proposals = [
        {"responder": "ad_disable_account", "target": "alice"},
        {"responder": "ad_disable_account", "target": "bob"},
        {"responder": "vpn_kill_session", "target": "alice"},
        {"responder": "ad_disable_account", "target": "alice"},  # duplicate: shown once
    ]
    found = buttons(card(make_incident(proposed_actions=proposals)), *APPROVE_DENY)
    assert len(found) == 6
    assert len({b["action_id"] for b in found}) == 6
    assert "Approve: run vpn_kill_session on alice" in [b["text"]["text"] for b in found]


def test_no_buttons_once_the_action_exists_or_without_ask_approval() -> None:
    running = make_action(status="running", undo_data={})
    assert buttons(card(make_incident(), [running]), *APPROVE_DENY, ActionId.UNDO) == []
    denied = make_action(status="denied", approved_by="U0BOB", result=None)
    blocks = card(make_incident(), [denied])
    assert buttons(blocks, *APPROVE_DENY, ActionId.UNDO) == []
    assert any("*Denied* by <@U0BOB>" in t for t in mrkdwn_texts(blocks))
    assert buttons(card(make_incident(decision="notify")), *APPROVE_DENY) == []
    # only the close buttons remain on these open cards
    assert {kind_of(b["action_id"]) for b in buttons(blocks)} == {CLOSE}


def test_undo_button_after_success_names_the_action_row() -> None:
    blocks = card(make_incident(), [make_action()])
    (undo,) = buttons(blocks, ActionId.UNDO)
    assert undo["text"]["text"] == "Undo: disable alice"
    assert undo["action_id"] == action_id_for(ActionId.UNDO, "12") == "fido_undo:12"
    assert ButtonValue.model_validate_json(undo["value"]).action_id == 12
    line = next(t for t in mrkdwn_texts(blocks) if t.startswith("✅"))
    assert "*succeeded* · approved by <@U0ALICE>" in line
    assert "requested by" not in line  # the approver asked
    assert "<!date^1767323160^" in line
    assert "Disabled CN=alice,OU=Staff,DC=example,DC=com" in line


def test_undo_only_for_a_reversible_responder_and_not_once_undone() -> None:
    revoked = make_action(responder="okta_clear_sessions", undo_data={"sessions": 2})
    assert buttons(card(make_incident(), [revoked]), ActionId.UNDO) == []  # undo data or not
    assert buttons(card(make_incident(), [make_action()], reversible=()), ActionId.UNDO) == []
    undone = make_action(status="undone", undone_by="U0CAROL")
    blocks = card(make_incident(), [undone])
    assert buttons(blocks, ActionId.UNDO) == []
    assert any("undone by <@U0CAROL>" in t for t in mrkdwn_texts(blocks))


def test_automatic_action_is_credited_to_fido() -> None:
    auto = make_action(requested_by="fido", approved_by=None)
    blocks = card(make_incident(decision="auto_act"), [auto])
    line = next(t for t in mrkdwn_texts(blocks) if t.startswith("✅"))
    assert "automatic (Fido)" in line and "<@" not in line
    assert [b["action_id"] for b in buttons(blocks, ActionId.UNDO)] == ["fido_undo:12"]
    assert buttons(blocks, *APPROVE_DENY) == []


def test_only_what_runs_by_itself_loses_its_buttons_when_acting_automatically() -> None:
    incident = make_incident(
        decision="auto_act",
        decision_reason="score 95 ≥ 90; asking for the rest: ad_disable_account on bob …",
        observables={"users": ["alice", "bob"]},
        proposed_actions=[
            {"responder": "ad_disable_account", "target": "alice", "automatic": True},
            {"responder": "ad_disable_account", "target": "bob"},
        ],
    )
    approve = buttons(card(incident), ActionId.APPROVE)
    assert [b["text"]["text"] for b in approve] == ["Approve: disable bob"]


def test_alert_and_directory_values_cannot_mention_or_link() -> None:
    incident = make_incident(
        title=EVIL,
        observables={"users": ["<@U0ADMIN>"], "urls": ["<https://evil.example>"]},
        enrichment={
            "ad": {
                "status": "ok",
                "facts": {"user:<@U0ADMIN>": {"display_name": EVIL, "groups": [EVIL]}},
            }
        },
        score_breakdown=[{"points": 5, "reason": EVIL}],
        decision_reason=EVIL,
        proposed_actions=[{"responder": "ad_disable_account", "target": "<!here>"}],
    )
    action = make_action(
        target="<!everyone>", result=EVIL, requested_by="<@U0ROOT>", approved_by=None
    )
    blocks = card(incident, [action])
    for text in mrkdwn_texts(blocks):
        assert not re.search(r"<[!@#h]", text.replace("<!date^", "")), text
    joined = "\n".join(mrkdwn_texts(blocks))
    assert "&lt;!channel&gt; see &lt;https://evil.example|your bank&gt;" in joined
    assert "`&lt;@U0ADMIN&gt;`" in joined
    # plain_text (header, buttons) is never parsed by Slack: shown as typed, not escaped
    assert blocks[0]["text"]["text"].endswith(EVIL)
    assert "<!channel>" not in card_text(incident)
    assert "&lt;!channel&gt;" in card_text(incident)


def test_long_texts_are_cut_to_slack_limits() -> None:
    long = "A" * 10_000
    incident = make_incident(
        title=long,
        decision_reason=long,
        score_breakdown=[{"points": 1, "reason": long}] * 40,
        observables={"users": [long] * 50},
        proposed_actions=[{"responder": "ad_disable_account", "target": "x" * 200}],
    )
    blocks = card(incident, [make_action(result=long)])  # to_dict() validates limits
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(t) <= 3000 for t in mrkdwn_texts(blocks))
    assert all(len(b["text"]["text"]) <= 75 for b in buttons(blocks))
    assert all(len(b["action_id"]) <= 255 and len(b["value"]) <= 2000 for b in buttons(blocks))
    assert len(json.dumps(blocks)) < 50_000


def _worst_case(**overrides: Any) -> Incident:
    """Every part of the card at its largest: the comment in blocks.py counts these."""
    users = [f"user{i}" for i in range(40)]
    facts: dict[str, Any] = {f"user:{u}": {"display_name": u} for u in users}
    facts |= {f"ip:203.0.113.{i}": {"verdict": "malicious"} for i in range(30)}
    fields: dict[str, Any] = dict(
        observables={"users": users},
        enrichment={
            "ad": {"status": "ok", "facts": facts},
            "vt": {"status": "error", "facts": {}, "error": "HTTP 500"},
        },
        degraded=True,
        suppressed_by="db:9",
        proposed_actions=[{"responder": "ad_disable_account", "target": u} for u in users],
    )
    return make_incident(**(fields | overrides))


def test_card_never_exceeds_fifty_blocks() -> None:
    actions = [make_action(id=i, target=f"other{i}", idempotency_key=str(i)) for i in range(1, 30)]
    events = [make_event(i) for i in range(1, 20)]
    blocks = [
        b.to_dict()
        for b in incident_card(
            _worst_case(), actions, labels=LABELS, reversible=REVERSIBLE, full=True, events=events
        )
    ]
    assert len(blocks) == 48  # the worst case counted in blocks.py: nothing was cut off
    assert len(buttons(blocks, ActionId.UNDO)) == 10  # the newest Undo buttons
    assert len(buttons(blocks, ActionId.APPROVE)) == 10
    assert any("more proposals" in t for t in mrkdwn_texts(blocks))
    assert [kind_of(b["action_id"]) for b in blocks[-1]["elements"]] == [CLOSE] * 3

    closed = _worst_case(status="closed", verdict="false_positive", suppressed_by=None)
    closed_blocks = [
        b.to_dict()
        for b in incident_card(
            closed, actions, labels=LABELS, reversible=REVERSIBLE, full=True, events=events
        )
    ]
    assert len(closed_blocks) == 37  # a suppressed incident gets no offer: never 38
    assert [kind_of(b["action_id"]) for b in closed_blocks[-1]["elements"]] == [ActionId.SUPPRESS]


def test_degraded_warning_names_the_failed_enrichers() -> None:
    enrichment = {
        "active_directory": {"status": "timeout", "facts": {}, "error": "no answer in 10s"},
        "virustotal": {"status": "error", "facts": {}, "error": "HTTP 500"},
        "jamf": {"status": "ok", "facts": {}, "error": None},
    }
    blocks = card(make_incident(degraded=True, enrichment=enrichment))
    (warning,) = [t for t in mrkdwn_texts(blocks) if "Enrichment incomplete" in t]
    assert "active_directory (timeout: no answer in 10s)" in warning
    assert "virustotal (error: HTTP 500)" in warning
    assert "jamf" not in warning


def test_render_text_for_the_terminal() -> None:
    incident = make_incident(title="Login from <b>Tor</b> & more")
    text = render_text(incident_card(incident, [], labels=LABELS))
    assert text.splitlines()[0] == "🔴 CRITICAL · Login from <b>Tor</b> & more"
    assert "Score: 70/100" in text
    assert "Incident #3 · 2 events · 2026-01-02 03:04 UTC" in text
    assert "[ Approve: disable alice ]  [ Deny ]" in text
    assert "[ ✅ Resolve (true positive) ]  [ 🙅 False positive ]  [ Benign ]" in text
    assert "Name:* Alice Example" in text


def test_card_text_is_a_short_summary() -> None:
    assert (
        card_text(make_incident()) == "[CRITICAL] 70/100 Incident #3: Impossible travel for alice"
    )


def test_long_discriminators_still_make_valid_unique_action_ids() -> None:
    a, b = action_id_for(ActionId.APPROVE, "r:" + "x" * 300), action_id_for(ActionId.APPROVE, "r:y")
    assert len(a) <= 255 and a != action_id_for(ActionId.APPROVE, "r:" + "x" * 301)
    assert kind_of(a) is ActionId.APPROVE and kind_of(b) is ActionId.APPROVE
    assert kind_of("fido_approvex") is None and kind_of("other:fido_undo:1") is None


def test_button_value_is_frozen_and_strict() -> None:
    value = ButtonValue(incident_id=1, responder="r", target="t")
    with pytest.raises(ValueError):
        value.incident_id = 2  # type: ignore[misc]
    with pytest.raises(ValueError):
        ButtonValue.model_validate_json('{"incident_id": "x", "responder": "r", "target": "t"}')
    with pytest.raises(ValueError, match="2000"):
        ButtonValue(incident_id=1, responder="r", target="t" * 2000).dump()


def test_card_shows_verdicts_with_links_host_owner_and_pending_or_withheld() -> None:
    from bot.slack.facts import fact_sections

    enrichment = {
        "active_directory": {
            "status": "ok",
            "error": None,
            "facts": {
                "user:alice": {"found": True, "display_name": "Alice", "manager_name": "Bob Boss"},
                "host:pc-1": {"found": True, "os": "Windows 11", "ou": "Workstations/Finance"},
            },
        },
        "asset_inventory": {
            "status": "ok",
            "error": None,
            "facts": {"host:pc-1": {"owner": "Finance", "criticality": "crown-jewel"}},
        },
        "virustotal": {
            "status": "ok",
            "error": None,
            "facts": {
                "hash:44d88612fea8a8f36de82e1278abb02f": {
                    "verdict": "malicious",
                    "detection_ratio": "60/70",
                    "permalink": "https://www.virustotal.com/gui/file/44d88612fea8a8f36de82e1278abb02f",
                },
                "ip:8.8.8.8": {"pending": True},
                "ip:10.0.0.5": {"withheld": "internal"},
                "domain:evil.test": {"verdict": "clean", "permalink": "javascript:alert(1)|x"},
            },
        },
    }
    text = json.dumps([b.to_dict() for b in fact_sections(enrichment_of(enrichment))])
    assert "Bob Boss" in text and "Workstations/Finance" in text
    assert "*Owner:* Finance" in text and "*Criticality:* crown-jewel" in text
    assert (
        "<https://www.virustotal.com/gui/file/44d88612fea8a8f36de82e1278abb02f|virustotal>" in text
    )
    assert "*malicious*, detections 60/70" in text
    assert "pending (waiting for the provider's quota)" in text
    assert "not sent (internal value)" in text
    assert "javascript" not in text  # only plain https links become links


def test_open_card_offers_three_close_buttons_with_confirm_dialogs() -> None:
    found = buttons(card(make_incident(decision="notify")), CLOSE)
    assert [b["text"]["text"] for b in found] == [
        "✅ Resolve (true positive)",
        "🙅 False positive",
        "Benign",
    ]
    assert [b["action_id"] for b in found] == [
        "fido_close:true_positive",
        "fido_close:false_positive",
        "fido_close:benign",
    ]
    values = [IncidentValue.model_validate_json(b["value"]) for b in found]
    assert [v.verdict for v in values] == list(CloseVerdict)
    assert {v.incident_id for v in values} == {3}
    assert found[1]["confirm"]["title"]["text"] == "Close as false positive?"
    assert "Incident #3 will be closed as false positive" in found[1]["confirm"]["text"]["text"]


def test_no_close_buttons_when_only_recorded_or_not_yet_stored() -> None:
    assert buttons(card(make_incident(decision="record")), CLOSE) == []
    assert buttons(card(make_incident(id=None)), CLOSE) == []


def closed_incident(**overrides: Any) -> Incident:
    fields: dict[str, Any] = dict(
        status="closed",
        verdict="false_positive",
        closed_by="U0ANN",
        closed_at=datetime(2026, 1, 3, 0, 0, tzinfo=UTC),
        close_reason="noisy rule <!channel>",
    )
    return make_incident(**(fields | overrides))


def test_closed_card_says_how_it_ended_and_offers_only_undo_and_suppress() -> None:
    blocks = card(closed_incident(), [make_action()])
    text = "\n".join(mrkdwn_texts(blocks))
    assert (
        "🙅 Closed as false positive by <@U0ANN> · "
        "<!date^1767398400^{date_short_pretty} {time}|2026-01-03 00:00 UTC> · "
        "noisy rule &lt;!channel&gt;"
    ) in text
    assert buttons(blocks, *APPROVE_DENY, CLOSE) == []
    (undo,) = buttons(blocks, ActionId.UNDO)  # a succeeded action can still be undone
    (offer,) = buttons(blocks, ActionId.SUPPRESS)
    assert offer["text"]["text"] == "🔕 Suppress similar alerts (30 days)"
    assert offer["action_id"] == "fido_suppress:3"
    assert IncidentValue.model_validate_json(offer["value"]) == IncidentValue(
        incident_id=3, days=30
    )
    # the dialog says what will be matched: this detector-less incident's title and host
    assert "title Impossible travel for alice, host ws-042" in offer["confirm"]["text"]["text"]
    assert "for 30 days" in offer["confirm"]["text"]["text"]


def test_suppress_offer_follows_the_policy_and_is_made_once() -> None:
    (offer,) = buttons(card(closed_incident(), suppression_days=14), ActionId.SUPPRESS)
    assert offer["text"]["text"] == "🔕 Suppress similar alerts (14 days)"
    assert IncidentValue.model_validate_json(offer["value"]).days == 14
    made = card(closed_incident(), suppression="db:4")
    assert buttons(made) == []
    assert "🔕 Alerts like this are suppressed by `db:4`" in mrkdwn_texts(made)
    for other in (
        closed_incident(verdict="true_positive"),
        closed_incident(verdict="benign"),
        closed_incident(suppressed_by="db:2"),  # a suppression already silenced it
    ):
        assert buttons(card(other)) == []


def test_closed_line_without_verdict_or_reason() -> None:
    blocks = card(closed_incident(verdict="true_positive", close_reason=None))
    (line,) = [t for t in mrkdwn_texts(blocks) if "Closed" in t]
    assert line.startswith("✅ Closed as true positive by <@U0ANN> · <!date^")
    assert line.endswith("|2026-01-03 00:00 UTC>")


def test_follow_up_and_suppressed_incidents_say_so() -> None:
    texts = mrkdwn_texts(card(make_incident(previous_id=1, suppressed_by="policy:scanner")))
    assert "Incident #3 · follows #1 · 2 events · <!date^" in texts[0]
    assert "🔕 Suppressed by `policy:scanner`: its alerts post nothing" in texts
    assert not any("follows" in t or "Suppressed" in t for t in mrkdwn_texts(card(make_incident())))


BREAKDOWN = [
    {"points": 60, "reason": "severity critical", "component": "threat"},
    {"points": 25, "reason": "hash 44d8… is malicious on VirusTotal", "component": "threat"},
    {"points": -15, "reason": "threat capped at 70", "component": "threat"},
    {"points": 15, "reason": "host ws-042 is crown-jewel in Jamf", "component": "asset"},
    {
        "points": 10,
        "reason": "user alice is a real account in Active Directory",
        "component": "user",
    },
    {"points": 2, "reason": "user alice had 1 earlier true-positive incident", "component": "user"},
    {"points": 8, "reason": "1 more related event", "component": "correlation"},
    {"points": 3, "reason": "the same alert has recurred for 4 h", "component": "correlation"},
    {"points": -8, "reason": "capped at 100", "component": "total"},
]


def test_card_shows_the_top_five_reasons_and_points_to_the_rest() -> None:
    incident = make_incident(score=100, score_breakdown=BREAKDOWN)
    (score,) = [t for t in mrkdwn_texts(card(incident)) if t.startswith("*Score")]
    assert score.splitlines() == [
        "*Score: 100/100* · top reasons",
        "• +60 severity critical",
        "• +25 hash 44d8… is malicious on VirusTotal",
        "• +15 host ws-042 is crown-jewel in Jamf",
        "• +10 user alice is a real account in Active Directory",
        "• +8 1 more related event",
        "_4 more: `/fido incident 3` shows every point_",
    ]


def test_full_card_shows_every_point_by_component() -> None:
    incident = make_incident(score=100, score_breakdown=BREAKDOWN)
    (score,) = [t for t in mrkdwn_texts(card(incident, full=True)) if t.startswith("*Score")]
    lines = score.splitlines()
    assert lines[0] == "*Score: 100/100* · every point"
    assert [line for line in lines if line.startswith("*")][1:] == [
        "*Threat* +70",
        "*Asset* +15",
        "*User* +12",
        "*Correlation* +11",
        "*Total* -8",
    ]
    assert "• -15 threat capped at 70" in lines and "• -8 capped at 100" in lines
    assert len([line for line in lines if line.startswith("•")]) == len(BREAKDOWN)
    assert "more:" not in score


def test_timeline_lists_ten_events_and_counts_the_rest() -> None:
    events = [make_event(n) for n in range(12, 0, -1)]  # given newest first
    events[-1] = make_event(1, suppressed_by="db:2", title="<!here> odd")
    (timeline,) = [t for t in mrkdwn_texts(card(make_incident(), events=events)) if "Timeline" in t]
    lines = timeline.splitlines()
    assert lines[0] == "*Timeline* · 12 events"
    assert lines[1].startswith("• <!date^1767322860^")  # the earliest first
    assert lines[1].endswith("· `generic` · 🟠 &lt;!here&gt; odd · 🔕 `db:2`")
    assert lines[2].endswith("· `generic` · 🟠 Impossible travel #2")
    assert len(lines) == 12 and lines[-1] == "_+2 more_"
    assert not any("Timeline" in t for t in mrkdwn_texts(card(make_incident())))


def test_new_button_values_are_strict_and_kinds_distinct() -> None:
    with pytest.raises(ValueError):
        IncidentValue.model_validate_json('{"incident_id": 1, "verdict": "maybe"}')
    with pytest.raises(ValueError):
        IncidentValue.model_validate_json('{"incident_id": 1, "responder": "r"}')
    with pytest.raises(ValueError):
        SuppressionValue(suppression_id=1).suppression_id = 2  # type: ignore[misc]
    assert IncidentValue(incident_id=1, verdict=CloseVerdict.benign).dump() == (
        '{"incident_id":1,"verdict":"benign"}'
    )
    assert kind_of("fido_suppress:3") is ActionId.SUPPRESS
    assert kind_of("fido_remove_suppression:3") is ActionId.REMOVE_SUPPRESSION
    assert kind_of("fido_close:benign") is ActionId.CLOSE
    assert kind_of("fido_suppressx") is None


def _suppression(key: str, **overrides: Any) -> ActiveSuppression:
    fields: dict[str, Any] = dict(
        key=key,
        name=f"suppression {key}",
        match=SuppressionMatch(detector="generic", title="Odd login", user="alice"),
        owner="U0ANN",
        reason="false positive, incident #1",
        expires_at=datetime(2026, 2, 1, tzinfo=UTC),
        origin="slack" if key.startswith("db:") else "policy",
    )
    return ActiveSuppression(**(fields | overrides))


def test_suppression_list_shows_each_with_hits_and_a_remove_button_for_slack_ones() -> None:
    listed = [
        _suppression("db:4", hits=3, last_hit_at=datetime(2026, 1, 5, tzinfo=UTC)),
        _suppression(
            "policy:scanner",
            name="scanner",
            match=SuppressionMatch(ip="10.0.0.0/8"),
            owner="secops@example.com",
            reason="<!channel> vuln scans",
        ),
    ]
    blocks = [b.to_dict() for b in suppressions_blocks(listed)]
    texts = mrkdwn_texts(blocks)
    assert "2 in force · 3 alerts silenced" in texts
    slack_one = next(t for t in texts if t.startswith("🔕 *db:4*"))
    assert "Matches detector `generic`, title `Odd login`, user `alice`" in slack_one
    assert "Owner <@U0ANN> · until <!date^1769904000^" in slack_one
    assert "· 3 hits, last <!date^1767571200^" in slack_one
    assert "_false positive, incident #1_" in slack_one
    policy_one = next(t for t in texts if t.startswith("🔕 *policy:scanner*"))
    assert "Matches ip `10.0.0.0/8`" in policy_one and "no hits yet" in policy_one
    assert "Owner secops@example.com" in policy_one
    assert "&lt;!channel&gt; vuln scans" in policy_one and "From the policy file" in policy_one
    (remove,) = buttons(blocks) + [b["accessory"] for b in blocks if "accessory" in b]
    assert remove["action_id"] == "fido_remove_suppression:4"
    assert SuppressionValue.model_validate_json(remove["value"]).suppression_id == 4
    empty = [b.to_dict() for b in suppressions_blocks([], removed=4)]
    assert "🗑️ Removed `db:4`: matching alerts post again." in mrkdwn_texts(empty)
    assert any("No suppression is in force" in t for t in mrkdwn_texts(empty))
