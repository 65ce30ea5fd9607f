"""The incident card, built from in-memory rows and checked as the JSON Slack receives."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.slack.blocks import card_text, incident_card, render_text
from bot.slack.ids import ACTION_ID_PATTERNS, ActionId, ButtonValue, action_id_for, kind_of
from pipeline.models import Action, Incident

LABELS = {"ad_disable_account": "disable"}
EVIL = "<!channel> see <https://evil.example|your bank>"


def make_incident(**overrides: Any) -> Incident:
    fields: dict[str, Any] = dict(
        id=3,
        title="Impossible travel for alice",
        severity="critical",
        score=80,
        score_breakdown=[
            {"points": 70, "reason": "critical severity"},
            {"points": 10, "reason": "user alice is in the directory"},
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
        decision_reason="Score 80 is at or above the approval threshold (75).",
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


def card(incident: Incident, actions: list[Action] | None = None) -> list[dict[str, Any]]:
    # to_dict() runs slack_sdk's validators: lengths, element counts.
    return [b.to_dict() for b in incident_card(incident, actions or [], labels=LABELS)]


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


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
    assert "*Score: 80/100*" in text
    assert "+70 critical severity" in text and "+10 user alice is in the directory" in text
    assert "*Users:* `alice`" in text and "*IPs:* `203.0.113.9`" in text
    assert "Hashes" not in text  # empty kinds are left out
    for fact in ("Alice Example", "Accountant", "Finance", "Bob Boss", "alice@example.com"):
        assert fact in text
    assert "*Groups:* Domain Users, Finance, VPN" in text
    assert "*OS:* Windows 11" in text
    assert "Approval needed — Score 80 is at or above" in text
    assert "<!date^1767323040^{date_short_pretty} {time}|2026-01-02 03:04 UTC>" in text
    assert "Enrichment incomplete" not in text


def test_approve_and_deny_buttons_carry_a_button_value() -> None:
    approve, deny = buttons(card(make_incident()))
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
        assert value == ButtonValue(incident_id=3, responder="ad_disable_account", target="alice")


def test_each_proposal_gets_its_own_unique_buttons_and_default_label() -> None:
    proposals = [
        {"responder": "ad_disable_account", "target": "alice"},
        {"responder": "ad_disable_account", "target": "bob"},
        {"responder": "vpn_kill_session", "target": "alice"},
        {"responder": "ad_disable_account", "target": "alice"},  # duplicate: shown once
    ]
    found = buttons(card(make_incident(proposed_actions=proposals)))
    assert len(found) == 6
    assert len({b["action_id"] for b in found}) == 6
    assert "Approve: run vpn_kill_session on alice" in [b["text"]["text"] for b in found]


def test_no_buttons_once_the_action_exists_or_without_ask_approval() -> None:
    running = make_action(status="running", undo_data={})
    assert buttons(card(make_incident(), [running])) == []
    denied = make_action(status="denied", approved_by="U0BOB", result=None)
    blocks = card(make_incident(), [denied])
    assert buttons(blocks) == []
    assert any("*Denied* by <@U0BOB>" in t for t in mrkdwn_texts(blocks))
    assert buttons(card(make_incident(decision="notify"))) == []


def test_undo_button_after_success_names_the_action_row() -> None:
    blocks = card(make_incident(), [make_action()])
    (undo,) = buttons(blocks)
    assert undo["text"]["text"] == "Undo: disable alice"
    assert undo["action_id"] == action_id_for(ActionId.UNDO, "12") == "fido_undo:12"
    assert ButtonValue.model_validate_json(undo["value"]).action_id == 12
    line = next(t for t in mrkdwn_texts(blocks) if t.startswith("✅"))
    assert "*succeeded* · approved by <@U0ALICE>" in line
    assert "requested by" not in line  # the approver asked
    assert "<!date^1767323160^" in line
    assert "Disabled CN=alice,OU=Staff,DC=example,DC=com" in line


def test_no_undo_without_undo_data_or_when_undone() -> None:
    assert buttons(card(make_incident(decision="auto_act"), [make_action(undo_data={})])) == []
    undone = make_action(status="undone", undone_by="U0CAROL")
    blocks = card(make_incident(), [undone])
    assert buttons(blocks) == []
    assert any("undone by <@U0CAROL>" in t for t in mrkdwn_texts(blocks))


def test_automatic_action_is_credited_to_fido() -> None:
    auto = make_action(requested_by="fido", approved_by=None)
    blocks = card(make_incident(decision="auto_act"), [auto])
    line = next(t for t in mrkdwn_texts(blocks) if t.startswith("✅"))
    assert "automatic (Fido)" in line and "<@" not in line
    assert [b["action_id"] for b in buttons(blocks)] == ["fido_undo:12"]


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


def test_card_never_exceeds_fifty_blocks() -> None:
    users = [f"user{i}" for i in range(40)]
    incident = make_incident(
        observables={"users": users},
        enrichment={
            "ad": {"status": "ok", "facts": {f"user:{u}": {"display_name": u} for u in users}}
        },
        proposed_actions=[{"responder": "ad_disable_account", "target": u} for u in users],
    )
    actions = [make_action(id=i, target=f"other{i}", idempotency_key=str(i)) for i in range(1, 30)]
    blocks = card(incident, actions)
    assert len(blocks) <= 50
    assert len(buttons(blocks)) >= 20  # the newest Undo buttons and some proposals remain
    assert any("more proposals" in t for t in mrkdwn_texts(blocks))


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
    assert "Score: 80/100" in text
    assert "Incident #3 · 2 events · 2026-01-02 03:04 UTC" in text
    assert "[ Approve: disable alice ]  [ Deny ]" in text
    assert "Name:* Alice Example" in text


def test_card_text_is_a_short_summary() -> None:
    assert (
        card_text(make_incident()) == "[CRITICAL] 80/100 Incident #3: Impossible travel for alice"
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
    text = json.dumps([b.to_dict() for b in fact_sections(enrichment)])
    assert "Bob Boss" in text and "Workstations/Finance" in text
    assert "*Owner:* Finance" in text and "*Criticality:* crown-jewel" in text
    assert (
        "<https://www.virustotal.com/gui/file/44d88612fea8a8f36de82e1278abb02f|virustotal>" in text
    )
    assert "*malicious*, detections 60/70" in text
    assert "pending (waiting for the provider's quota)" in text
    assert "not sent (internal value)" in text
    assert "javascript" not in text  # only plain https links become links
