"""``GET /openapi.json`` describes exactly the routes served, and schemathesis, generating
requests from it against a real ``fido serve``, finds no 5xx and no crash (a few hundred
requests here; ``benchmarks/fuzz_webhooks.py`` runs 10,000 and more)."""

from __future__ import annotations

from pathlib import Path

import httpx
import schemathesis
from fastapi.routing import APIRoute
from pydantic import SecretStr

import integrations
from benchmarks.fuzz_webhooks import fuzz
from bot.server import build_http_app
from integrations.detectors.generic import GenericDetector
from integrations.detectors.okta import OktaDetector
from pipeline import plugins
from pipeline.db import Database

TOKEN = "openapi-token"


def served(app: object) -> set[tuple[str, str]]:
    return {
        (route.path, method.lower())
        for route in app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def described(spec: dict[str, object]) -> set[tuple[str, str]]:
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return {
        (path, method) for path, item in paths.items() for method in item if method != "parameters"
    }


async def test_openapi_json_describes_the_routes_served(db: Database) -> None:
    app = build_http_app(
        db=db,
        detectors={"generic": GenericDetector(), "okta": OktaDetector()},
        webhook_token=SecretStr(TOKEN),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fido.test"
    ) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.1")
    assert described(spec) == served(app)
    webhook = spec["paths"]["/webhooks/{detector}"]
    assert webhook["parameters"][0]["schema"]["enum"] == ["generic", "okta"]
    assert {"202", "401", "413", "415", "422", "429", "503"} <= webhook["post"]["responses"].keys()
    assert "/slack/events" not in spec["paths"]  # Socket Mode: not served, not described
    operations = list(schemathesis.openapi.from_dict(spec).get_all_operations())
    assert len(operations) == len(served(app))  # a valid document schemathesis can use


def test_schemathesis_against_fido_serve_finds_no_server_error(tmp_path: Path) -> None:
    outcome = fuzz(300, tmp_path, examples=12, workers=2)
    assert outcome.server_errors == []
    assert not outcome.schemathesis_failed, outcome.report
    assert outcome.exit_code == 0, outcome.log[-3000:]  # still alive, and stopped cleanly
    assert outcome.requests >= 300
    integrations.load_all()
    # every built-in one was fuzzed (not the test doubles other tests may have registered)
    shipped = [name for name in plugins.detectors.names() if not name.startswith("test_")]
    assert outcome.detectors == shipped
    # the generated requests reached the parsers and the database, not only the refusals
    assert outcome.statuses[202] > 0 and outcome.statuses[422] > 0, outcome.statuses
