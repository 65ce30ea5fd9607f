"""``fido demo``: the real pipeline on bundled sample alerts — no Slack, no network.

A temporary SQLite database, the ``generic`` detector, an in-memory directory standing in
for Active Directory, the bundled asset inventory (``samples/assets.csv``), and the
``log_only`` responder standing in for a real one. Each
incident is printed with its score breakdown, its decision and its card as text; then a
demo approver approves the first proposal, so the updated card can be seen too.
"""

from __future__ import annotations

import asyncio
import tempfile
from importlib import resources
from pathlib import Path
from typing import TextIO

from sqlmodel import col, select

from bot.slack.blocks import incident_card, render_text
from integrations import load_all
from pipeline import db as database
from pipeline.engine import Engine
from pipeline.ingest import ingest
from pipeline.lookups.enricher import lookup_enrichers
from pipeline.models import Action, Incident
from pipeline.plugins import detectors, enrichers, lookups, responders
from pipeline.policy import ActionPolicy, Policy
from pipeline.records import breakdown_of, proposals_of

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


def describe(incident: Incident, actions: list[Action], labels: dict[str, str]) -> str:
    lines = [
        f"━━ Incident #{incident.id} · {incident.severity.upper()} · score {incident.score}/100",
        f"   {incident.title}",
        "   score breakdown:",
        *(
            f"     {line.points:+4d}  {line.reason}"
            for line in breakdown_of(incident.score_breakdown)
        ),
        f"   decision: {incident.decision} — {incident.decision_reason}",
        "   card:",
        *(
            f"     │ {line}"
            for line in render_text(incident_card(incident, actions, labels=labels)).splitlines()
        ),
    ]
    return "\n".join(lines)


async def run_demo(out: TextIO) -> int:
    load_all()
    with tempfile.TemporaryDirectory(prefix="fido-demo-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        await asyncio.to_thread(database.upgrade, url)
        db = database.Database(url)
        policy = Policy(actions=[ActionPolicy(responder="log_only")], enrichers=[])
        responder = responders.get("log_only")()
        labels = {"log_only": responder.label}
        inventory = lookups.get("asset_inventory")(
            path=str(resources.files("bot") / "samples" / "assets.csv")
        )
        engine = Engine(
            db=db,
            policy=policy,
            enrichers=[
                enrichers.get("static_directory")(DIRECTORY),
                *lookup_enrichers([inventory], db=db, policy=policy),
            ],
            responders={"log_only": responder},
            approvers=[DEMO_APPROVER],
        )
        detector = detectors.get("generic")()
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
            out.write(describe(*found, labels) + "\n\n")
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
                out.write(f"   action {action.status}: {action.result}\n\n")
                updated = await engine.incidents.get(incident_id)
                assert updated is not None
                out.write(describe(*updated, labels) + "\n")
                break
        await db.dispose()
    return 0
