"""``fido demo``: the real pipeline on bundled sample alerts — no Slack, no network.

A temporary SQLite database, the ``generic`` detector, an in-memory directory standing in
for Active Directory, the bundled asset inventory (``samples/assets.csv``), and the
``log_only`` responder standing in for a real one. Each incident is printed as plain
terminal text: its events (detector, title, when each happened and when Fido received it),
each account once however the alerts wrote it, what the directory and the inventory know,
the score breakdown, the decision and the buttons an approver sees on its card; then a demo
approver approves the first proposal, so the change can be seen too.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from sqlmodel import col, select

from bot.settings import Settings
from bot.slack.blocks import incident_card
from bot.tools import terminal_text
from integrations import load_all
from pipeline import db as database
from pipeline.clock import as_utc
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.lookups.enricher import lookup_enrichers
from pipeline.models import Action, Event, Incident
from pipeline.notify import Notifier
from pipeline.observables import Observables, account_name
from pipeline.plugins import Context, build_plugin, detectors, enrichers, lookups, responders
from pipeline.policy import ActionPolicy, Policy
from pipeline.records import (
    Enrichment,
    FactState,
    breakdown_of,
    enrichment_of,
    fact_state,
    proposals_of,
)

DEMO_APPROVER = "U0DEMO"
DIRECTORY = {
    "alice": {
        "display_name": "Alice Example",
        "title": "Finance Manager",
        "department": "Finance",
        "mail": "alice@corp.example.test",
        "manager_name": "Carol Chief",
        "groups": ["Finance", "VPN Users"],
        "disabled": False,
        "privileged": False,
    },
    "bob": {
        "display_name": "Bob Builder",
        "title": "Engineer",
        "department": "Engineering",
        "mail": "bob@corp.example.test",
        "groups": ["Engineering"],
        "disabled": False,
        "privileged": False,
    },
    "administrator": {
        "display_name": "Administrator",
        "groups": ["Domain Admins"],
        "disabled": False,
        "privileged": True,
    },
}


def samples() -> list[tuple[str, bytes]]:
    folder = resources.files("bot") / "samples"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return [(f.name, f.read_bytes()) for f in files]


def when(moment: datetime | None) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "not given"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _facts(enrichment: Enrichment, keys: list[str], indent: str) -> list[str]:
    """What every source knows about ``keys`` (one account however written), once."""
    merged: dict[str, Any] = {}
    sources: list[str] = []
    for source, result in enrichment.items():
        for key in keys:
            facts = result.facts.get(key)
            if facts and fact_state(facts) is FactState.answered:
                merged.update(facts)
                if source not in sources:
                    sources.append(source)
    shown = [(k, v) for k, v in merged.items() if k not in _HIDDEN and v not in (None, "", [])]
    if not shown:
        return [f"{indent}not found in {', '.join(enrichment) or 'any source'}"]
    width = max(len(k) for k, _ in shown) + 1
    return [f"{indent}from {', '.join(sources)}:"] + [
        f"{indent}  {(k.replace('_', ' ') + ':'):<{width}} {_shown(v)}" for k, v in shown
    ]


_HIDDEN = {"found", "account", "dn", "pattern"}  # how a source matched, not what it knows


def _verdicts(enrichment: Enrichment, key: str) -> str:
    said = []
    for source, result in enrichment.items():
        facts = result.facts.get(key)
        if not facts:
            continue
        state = fact_state(facts)
        if state is FactState.answered:
            detail = ", ".join(
                f"{k.replace('_', ' ')} {_shown(v)}" for k, v in facts.items() if k not in _HIDDEN
            )
            said.append(f"{source}: {detail}")
        else:
            said.append(f"{source}: {state.value.replace('_', ' ')}")
    return "; ".join(said) or "no enricher looked it up"


def describe(
    incident: Incident,
    actions: list[Action],
    events: list[Event],
    labels: dict[str, str],
    reversible: frozenset[str],
) -> str:
    """An incident as plain terminal text: its events (when each happened and when Fido
    received it), each account once however the alerts wrote it, what the directory and
    the inventory know, the score, the decision and the buttons an approver sees."""
    enrichment = enrichment_of(incident.enrichment)
    observables = Observables.model_validate(incident.observables or {})
    lines = [
        f"━━ Incident #{incident.id} · {incident.severity.upper()} · score {incident.score}/100",
        f"   {incident.title}",
        f"   {len(events)} event{'' if len(events) == 1 else 's'}:",
    ]
    for event in events:
        lines += [
            f"     • {event.title}  (detector {event.detector}, id {event.external_id})",
            f"       happened {when(event.occurred_at)}"
            f" · Fido received it {when(event.received_at)}",
        ]
    accounts: dict[str, list[str]] = {}
    for user in observables.of("user"):
        accounts.setdefault(account_name(user), []).append(user)
    for spellings in accounts.values():
        also = f" (also written {', '.join(spellings[1:])})" if len(spellings) > 1 else ""
        lines.append(f"   user {spellings[0]}{also}")
        keys = [Observables.key("user", u) for u in spellings]
        lines += _facts(enrichment, keys, "     ")
    for host in observables.of("host"):
        lines.append(f"   host {host}")
        lines += _facts(enrichment, [Observables.key("host", host)], "     ")
    for kind in ("ip", "domain", "hash", "url"):
        for value in observables.of(kind):
            verdicts = _verdicts(enrichment, Observables.key(kind, value))
            lines.append(f"   {kind} {value} — {verdicts}")
    if observables.observers:
        lines.append(f"   seen by {', '.join(observables.observers)}")
    lines += [
        "   score breakdown:",
        *(
            f"     {line.points:+4d}  {line.reason}"
            for line in breakdown_of(incident.score_breakdown)
        ),
        f"   decision: {incident.decision} — {incident.decision_reason}",
    ]
    for action in actions:
        lines.append(f"   action: {action.responder} {action.target} {action.status}")
    card = terminal_text(incident_card(incident, actions, labels=labels, reversible=reversible))
    buttons = [line for line in card.splitlines() if line.startswith("[ ")]
    lines.append("   an approver sees on the card in Slack:")
    lines += [f"     {line}" for line in buttons]
    return "\n".join(lines)


def slack_notifier(
    settings: Settings, labels: dict[str, str], reversible: frozenset[str]
) -> Notifier:
    """The notifier ``fido serve`` uses, posting to ``FIDO_SLACK_CHANNEL``."""
    from bot.slack.app import web_client
    from bot.slack.notifier import SlackNotifier

    assert settings.slack_channel is not None
    return SlackNotifier(
        web_client(settings), channel=settings.slack_channel, labels=labels, reversible=reversible
    )


async def run_demo(out: TextIO, slack: Settings | None = None) -> int:
    """``slack``: post the cards to its ``FIDO_SLACK_CHANNEL`` too (``fido demo --slack``),
    as ``fido serve`` would; without it nothing leaves the process."""
    load_all()
    with tempfile.TemporaryDirectory(prefix="fido-demo-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        await asyncio.to_thread(database.upgrade, url)
        db = database.Database(url)
        policy = Policy(actions=[ActionPolicy(responder="log_only")], enrichers=[])
        context = Context()  # the bundled plugins need no client, secret or directory
        responder = build_plugin(responders, "log_only", {}, context)
        labels = {"log_only": responder.label}
        reversible = frozenset({"log_only"} if responder.reversible else ())
        inventory = build_plugin(
            lookups,
            "asset_inventory",
            {"path": str(resources.files("bot") / "samples" / "assets.csv")},
            context,
        )
        engine = Engine(
            db=db,
            policy=policy,
            enrichers=[
                build_plugin(enrichers, "static_directory", {"users": DIRECTORY}, context),
                *lookup_enrichers([inventory], db=db, policy=policy),
            ],
            responders={"log_only": responder},
            notifier=slack_notifier(slack, labels, reversible) if slack is not None else None,
            approvers=[DEMO_APPROVER],
        )
        detector = build_plugin(detectors, "generic", {}, context)
        for name, body in samples():
            async with db.session() as session:
                result = await ingest(session=session, detector=detector, body=body)
            out.write(f"ingested {name}: events {result.created}\n")
            await engine.drain()
        async with db.session() as session:
            rows = await session.exec(select(Incident.id).order_by(col(Incident.id)))
            touched = [row for row in rows.all() if row is not None]
        out.write("\n")
        for incident_id in touched:
            found = await engine.incidents.get(incident_id)
            assert found is not None
            events = await engine.incidents.events_of(incident_id)
            out.write(describe(*found, events, labels, reversible) + "\n\n")
        for incident_id in touched:
            found = await engine.incidents.get(incident_id)
            assert found is not None
            proposals = proposals_of(found[0].proposed_actions)
            if proposals:
                out.write(f"{DEMO_APPROVER} clicks Approve on incident #{incident_id}:\n")
                action = await engine.incidents.approve(
                    incident_id=incident_id,
                    actor=DEMO_APPROVER,
                    responder=proposals[0].responder,
                    target=proposals[0].target,
                )
                await engine.flush()  # the card updated in Slack with --slack
                out.write(f"   action {action.status}: {action.result}\n\n")
                updated = await engine.incidents.get(incident_id)
                assert updated is not None
                events = await engine.incidents.events_of(incident_id)
                out.write(describe(*updated, events, labels, reversible) + "\n")
                break
        if slack is not None:
            out.write(
                f"\nthe cards were posted to {slack.slack_channel} as fido serve posts them; "
                "their buttons answer once fido serve runs with these settings\n"
            )
        await db.dispose()
    return 0
