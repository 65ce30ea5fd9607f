"""How fast Fido takes alerts in and works through them.

Prints two figures, on a temporary SQLite database (or FIDO_DATABASE_URL):
- webhook ingest: alerts/s accepted by POST /webhooks/generic (each committed before 202),
  through the real ASGI app in-process (no network);
- pipeline: events/s through enrich → correlate → score → decide → publish, with the
  in-memory directory enricher and no Slack.

    python benchmarks/throughput.py [N]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from bot.demo import DIRECTORY
from bot.server import build_http_app
from integrations import load_all
from pipeline import db as database
from pipeline.engine import Engine
from pipeline.plugins import detectors, enrichers, responders
from pipeline.policy import ActionPolicy, Policy


async def main(count: int) -> None:
    load_all()
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("FIDO_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.db'}"
        schema = None
        if not database.is_sqlite(url):  # a throw-away schema, dropped at the end
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(database.sync_url(url))
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            url += ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")
        database.upgrade(url)
        db = database.Database(url)
        app = build_http_app(
            db=db,
            detectors={"generic": detectors.get("generic")()},
            webhook_token=SecretStr("bench"),
        )
        headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
        users = list(DIRECTORY) + [f"user{i}" for i in range(50)]
        bodies = [
            json.dumps(
                {
                    "id": f"bench-{i}",
                    "title": f"Alert {i}",
                    "severity": "high",
                    "user": users[i % len(users)],
                    "host": f"pc-{i % 97}",
                    "src_ip": f"198.51.100.{i % 250}",
                }
            ).encode()
            for i in range(count)
        ]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            started = time.perf_counter()
            for body in bodies:
                response = await client.post("/webhooks/generic", content=body, headers=headers)
                assert response.status_code == 202, response.text
            ingest = time.perf_counter() - started
        engine = Engine(
            db=db,
            policy=Policy(actions=[ActionPolicy(responder="log_only")], enrichers=[]),
            enrichers=[enrichers.get("static_directory")(DIRECTORY)],
            responders={"log_only": responders.get("log_only")()},
        )
        started = time.perf_counter()
        handled = await engine.drain()
        work = time.perf_counter() - started
        await db.dispose()
        if schema is not None:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    assert handled == count
    backend = url.split(":", 1)[0]
    print(
        f"webhook ingest ({backend}): {count / ingest:,.0f} alerts/s "
        f"({ingest / count * 1000:.2f} ms per alert, {count} alerts)"
    )
    print(
        f"pipeline ({backend}): {count / work:,.0f} events/s "
        f"({work / count * 1000:.2f} ms per event, {count} events)"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
