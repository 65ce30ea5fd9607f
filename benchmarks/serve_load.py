"""Load on the real ``fido serve``: a subprocess over loopback, a fake Slack, a slow enricher.

Figures (one line each):
- accept:  32 concurrent clients (aiohttp, one process) POST single alerts to
           /webhooks/generic for ~10 s:
           alerts/s and p50/p99 of the 202s; beside it, with the same client in the same run,
           a minimal FastAPI endpoint that commits each request to SQLite (uvicorn subprocess);
- drain:   a burst of 200 alerts about 200 users (200 incidents; --count), enricher of 200 ms:
           incidents/s from the first POST until the 200th card reaches the fake Slack;
- latency: one alert every 200 ms (50 alerts), same enricher: POST → chat.postMessage p50/p99;
- storm:   10,000 alerts about 20 hosts in arrays of 100, concurrently: events lost, seconds
           until no event is left undone, cards posted.

The slow enricher is the ``bench_slow`` lookup registered by ``benchmarks/_slow_serve.py``,
which then runs ``fido serve`` (FIDO_BENCH_LAUNCHER=FILE runs another launcher instead,
e.g. one that times or counts what the serve does). SQLite by default (a temporary file);
PostgreSQL with FIDO_DATABASE_URL=postgresql://… (a throw-away schema, dropped at the end).

    python benchmarks/serve_load.py [--only accept|drain|latency|storm]
        [--workers 32] [--enrich-ms 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bot.settings import ENV_NAMES  # noqa: E402
from pipeline import db as database  # noqa: E402
from pipeline.policy import Policy  # noqa: E402
from tests.fixtures.servers import free_port  # noqa: E402
from tests.fixtures.slack import FakeSlack  # noqa: E402

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
DEFAULT_WORKERS = Policy.model_fields["worker_concurrency"].default
LAUNCHER = Path(os.environ.get("FIDO_BENCH_LAUNCHER") or ROOT / "benchmarks" / "_slow_serve.py")


# --- the fake Slack, with arrival times -----------------------------------------------------


class TimedSlack(FakeSlack):
    """FakeSlack that also notes when each chat.postMessage arrived (time.monotonic())."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, dict[str, Any]]] = []

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        with self._lock:
            self.arrivals.append((time.monotonic(), params))
        return super()._chat_postMessage(params)

    def cards(self) -> list[tuple[float, dict[str, Any]]]:
        """Top-level posts (not thread replies): one per incident."""
        with self._lock:
            return [(t, p) for t, p in self.arrivals if not p.get("thread_ts")]


# --- statistics --------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- databases ---------------------------------------------------------------------------


@contextmanager
def throwaway_database(tmp: Path, name: str) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    base = os.environ.get("FIDO_DATABASE_URL")
    if not base or database.is_sqlite(base):
        yield f"sqlite:///{tmp / f'{name}.db'}"
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database.sync_url(base))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield base + ("&" if "?" in base else "?") + "options=" + quote(f"-csearch_path={schema}")
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Counts:
    """Reads the serve's database (sync SQLAlchemy) while it runs."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(database.sync_url(url))

    def scalar(self, sql: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


# --- processes ---------------------------------------------------------------------------


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(overrides)
    return env


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used so far; None where /proc has no
    answer (not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"process exited:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def fido_serve(
    tmp: Path, name: str, slack: FakeSlack, *, workers: int | None, enrich_ms: int, enrichers: str
) -> Iterator[tuple[str, str, int]]:
    """(base URL, database URL, process id) of a running ``fido serve`` with the bench_slow
    lookup."""
    with throwaway_database(tmp, name) as url:
        policy = tmp / f"{name}.yml"
        policy.write_text(
            f"enrichers: {enrichers}\n"
            "actions:\n  - responder: log_only\n"
            + (f"worker_concurrency: {workers}\n" if workers else "")
        )
        port = free_port()
        env = clean_env(
            FIDO_DATABASE_URL=url,
            FIDO_CONFIG=str(policy),
            FIDO_HTTP_PORT=str(port),
            FIDO_WEBHOOK_TOKEN=TOKEN,
            FIDO_SLACK_CHANNEL="C0BENCH",
            SLACK_BOT_TOKEN=slack.token,
            SLACK_SIGNING_SECRET="bench-secret",
            SLACK_API_URL=slack.base_url,
            FIDO_REPLICA=f"bench-{name}",
            FIDO_BENCH_ENRICH_MS=str(enrich_ms),
            # the fake Slack has no per-channel limit; at Slack's 1 message/s per channel a
            # burst of distinct incidents in one channel takes a second per card whatever
            # Fido does, so the figures here measure Fido, unpaced
            FIDO_SLACK_MESSAGES_PER_SECOND="10000",
        )
        log = tmp / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(LAUNCHER)], env=env, cwd=tmp, stdout=out, stderr=out
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(process, f"{base}/healthz", log)
            yield base, url, process.pid
        finally:
            stop(process)


REFERENCE_APP = """
import sqlite3, sys
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
import uvicorn

path, port = sys.argv[1], int(sys.argv[2])
setup = sqlite3.connect(path)
setup.execute("PRAGMA journal_mode=WAL")
setup.execute("CREATE TABLE IF NOT EXISTS alert (id INTEGER PRIMARY KEY, body TEXT)")
setup.commit()
setup.close()
db = sqlite3.connect(path, timeout=30)  # one connection, used from the event loop only
app = FastAPI()

@app.get("/healthz")
async def healthz():
    return {"ok": True}

@app.post("/webhooks/generic")
async def webhook(request: Request):
    body = await request.json()
    db.execute("INSERT INTO alert (body) VALUES (?)", (str(body),))
    db.commit()
    return JSONResponse({"accepted": 1}, status_code=202)

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


@contextmanager
def reference_server(tmp: Path) -> Iterator[str]:
    """A minimal FastAPI + SQLite endpoint (uvicorn, one process) committing each request."""
    script = tmp / "reference_app.py"
    script.write_text(REFERENCE_APP)
    port = free_port()
    log = tmp / "reference.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(script), str(tmp / "reference.db"), str(port)],
            cwd=tmp,
            stdout=out,
            stderr=out,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(process, f"{base}/healthz", log)
        yield base
    finally:
        stop(process)


# --- the client ----------------------------------------------------------------------------


def alert(tag: str, i: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"{tag}-{i:05d}", "title": f"{tag} alert {i:05d}", "severity": "high", **fields}


async def hammer(
    base: str, seconds: float, clients: int, tag: str
) -> tuple[int, list[float], int, float]:
    """``clients`` tasks POSTing one alert each, back to back, for ``seconds``.

    aiohttp, not httpx: on this machine httpx.AsyncClient itself tops out near 200
    requests/s (against an endpoint that answers 960/s to aiohttp), which would measure the
    client instead of the server."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as client:
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors, counter
            while time.monotonic() < stop_at:
                counter += 1
                body = json.dumps(alert(tag, counter, user=f"{tag}-u{counter % 500}"))
                started = time.perf_counter()
                async with client.post("/webhooks/generic", data=body, headers=HEADERS) as r:
                    await r.read()
                    status = r.status
                elapsed = time.perf_counter() - started
                if status == 202:
                    latencies.append(elapsed)
                else:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        total = time.monotonic() - started
    return len(latencies), latencies, errors, total


def accept_line(label: str, ok: int, latencies: list[float], errors: int, total: float) -> str:
    return (
        f"accept {label}: {ok / total:,.0f} alerts/s, p50 {pct(latencies, 50) * 1000:.1f} ms, "
        f"p99 {pct(latencies, 99) * 1000:.1f} ms ({ok} accepted in {total:.1f} s, "
        f"{errors} errors, 32 clients)"
    )


async def post_all(base: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    """POST every body with ``concurrency`` in flight; (monotonic time of the first, errors)."""
    queue = list(reversed(bodies))
    errors = 0
    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=base, connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            nonlocal errors
            while queue:
                body = queue.pop()
                async with client.post("/webhooks/generic", data=body, headers=HEADERS) as r:
                    answer = await r.read()
                    if r.status != 202:
                        errors += 1
                        print(f"  ! {r.status} {answer[:200]!r}", file=sys.stderr)

        first = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return first, errors


def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


# --- the figures -----------------------------------------------------------------------------


def bench_accept(tmp: Path, args: argparse.Namespace, backend: str) -> None:
    slack = TimedSlack().start()
    try:
        with fido_serve(
            tmp,
            "accept",
            slack,
            workers=args.workers,
            enrich_ms=args.enrich_ms,
            enrichers="[]" if args.no_enricher else "[bench_slow]",
        ) as (base, url, _):
            asyncio.run(hammer(base, 1.0, 32, "warm"))  # connections, caches, first compiles
            ok, lat, errors, total = asyncio.run(hammer(base, args.seconds, 32, "acc"))
            print(accept_line(f"fido serve ({backend})", ok, lat, errors, total), flush=True)
        with reference_server(tmp) as ref:
            asyncio.run(hammer(ref, 1.0, 32, "warm"))
            ok, lat, errors, total = asyncio.run(hammer(ref, args.seconds, 32, "ref"))
            print(accept_line("reference FastAPI+SQLite", ok, lat, errors, total), flush=True)
    finally:
        slack.stop()


def bench_drain(tmp: Path, args: argparse.Namespace, backend: str) -> None:
    slack = TimedSlack().start()
    try:
        with fido_serve(
            tmp,
            "drain",
            slack,
            workers=args.workers,
            enrich_ms=args.enrich_ms,
            enrichers="[]" if args.no_enricher else "[bench_slow]",
        ) as (base, url, pid):
            count = args.count
            bodies = [
                json.dumps(alert("drain", i, user=f"drain-user-{i}")).encode() for i in range(count)
            ]
            cpu_before = cpu_seconds(pid)
            first, errors = asyncio.run(post_all(base, bodies, 32))
            posted = time.monotonic()
            arrived = wait_until(lambda: len(slack.cards()) >= count, 300)
            cpu_after = cpu_seconds(pid)
            cards = slack.cards()
            last = cards[-1][0] if cards else first
            counts = Counts(url)
            incidents = counts.scalar("SELECT count(*) FROM incident")
            counts.close()
            took = last - first
            print(
                f"drain ({backend}): {len(cards) / took:,.1f} incidents/s "
                f"({len(cards)}/{count} cards in {took:.2f} s from the first POST; "
                f"POSTs took {posted - first:.2f} s, {errors} errors; {incidents} incidents; "
                f"enricher {args.enrich_ms} ms, {args.workers or DEFAULT_WORKERS} workers"
                f"{'' if arrived else '; TIMED OUT'})"
                + (
                    f"; the serve used {(cpu_after - cpu_before) / max(1, len(cards)) * 1000:.1f}"
                    " ms of CPU per incident"
                    if cpu_before is not None and cpu_after is not None
                    else ""
                ),
                flush=True,
            )
    finally:
        slack.stop()


def bench_latency(tmp: Path, args: argparse.Namespace, backend: str) -> None:
    slack = TimedSlack().start()
    try:
        with fido_serve(
            tmp,
            "latency",
            slack,
            workers=args.workers,
            enrich_ms=args.enrich_ms,
            enrichers="[]" if args.no_enricher else "[bench_slow]",
        ) as (base, url, _):
            count, sent = 50, {}
            with httpx.Client(base_url=base, timeout=30) as client:
                for i in range(count):
                    body = alert("lat", i, user=f"lat-user-{i}")
                    started = time.monotonic()
                    response = client.post("/webhooks/generic", json=body, headers=HEADERS)
                    assert response.status_code == 202, response.text
                    sent[body["title"]] = started
                    time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
            wait_until(lambda: len(slack.cards()) >= count, 60)
            delays = []
            for arrived, params in slack.cards():
                text_ = str(params.get("text", ""))
                for title, started in sent.items():
                    if title in text_:  # zero-padded: no title is a prefix of another
                        delays.append(arrived - started)
                        break
            print(
                f"latency ({backend}): p50 {pct(delays, 50) * 1000:.0f} ms, "
                f"p99 {pct(delays, 99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
                f"({len(delays)}/{count} matched; one alert / 200 ms; "
                f"enricher {args.enrich_ms} ms)",
                flush=True,
            )
    finally:
        slack.stop()


def bench_storm(tmp: Path, args: argparse.Namespace, backend: str) -> None:
    slack = TimedSlack().start()
    try:
        with fido_serve(
            tmp,
            "storm",
            slack,
            workers=args.workers,
            enrich_ms=args.enrich_ms,
            enrichers="[]" if args.no_enricher else "[bench_slow]",
        ) as (base, url, _):
            count, per_delivery = 10_000, 100
            alerts = [alert("storm", i, host=f"storm-host-{i % 20}") for i in range(count)]
            bodies = [
                json.dumps(alerts[i : i + per_delivery]).encode()
                for i in range(0, count, per_delivery)
            ]
            counts = Counts(url)
            first, errors = asyncio.run(post_all(base, bodies, 8))
            posted = time.monotonic()
            stored = counts.scalar("SELECT count(*) FROM event")
            undone = lambda: counts.scalar("SELECT count(*) FROM event WHERE status != 'done'")  # noqa: E731
            empty = wait_until(lambda: undone() == 0, 600, step=0.25)
            emptied = time.monotonic()
            stored = counts.scalar("SELECT count(*) FROM event")
            done = counts.scalar("SELECT count(*) FROM event WHERE status = 'done'")
            failed = counts.scalar("SELECT count(*) FROM event WHERE status = 'failed'")
            incidents = counts.scalar("SELECT count(*) FROM incident")
            wait_until(lambda: len(slack.cards()) >= incidents, 30, step=0.1)
            cards = len(slack.cards())
            updates = len(slack.calls("chat.update"))
            counts.close()
            print(
                f"storm ({backend}): {count - stored} lost ({stored}/{count} stored, {done} done, "
                f"{failed} failed), queue empty {emptied - first:.1f} s after the first POST"
                f"{'' if empty else ' (TIMED OUT)'} (POSTs took {posted - first:.1f} s, "
                f"{errors} errors); {incidents} incidents, {cards} cards posted, "
                f"{updates} card updates",
                flush=True,
            )
    finally:
        slack.stop()


FIGURES = {
    "accept": bench_accept,
    "drain": bench_drain,
    "latency": bench_latency,
    "storm": bench_storm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIGURES))
    parser.add_argument(
        "--workers", type=int, default=None, help="policy worker_concurrency (its default)"
    )
    parser.add_argument("--enrich-ms", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="accept: how long")
    parser.add_argument("--count", type=int, default=200, help="drain: incidents in the burst")
    parser.add_argument(
        "--no-enricher", action="store_true", help="policy enrichers: [] (isolates the door)"
    )
    args = parser.parse_args()
    base = os.environ.get("FIDO_DATABASE_URL")
    backend = "sqlite" if not base or database.is_sqlite(base) else "postgresql"
    tmp = Path(tempfile.mkdtemp(prefix="fido-serve-load-"))
    try:
        for name, figure in FIGURES.items():
            if args.only in (None, name):
                figure(tmp, args, backend)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
