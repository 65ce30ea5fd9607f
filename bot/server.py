"""The HTTP side of ``fido serve``: detector webhooks, Slack's HTTP mode, health, metrics.

``POST /webhooks/{detector}`` answers 202 only once the alert is committed to the
database; every refusal is a 4xx with a JSON ``detail`` saying why, and stores nothing,
except a payload no parser reads (422), which is kept verbatim as a dead letter. Bodies
over ``MAX_BODY`` (webhooks and ``/slack/events``) are refused with 413 before the rest is
read, deliveries of more than ``MAX_ALERTS`` alerts with 413; a large body is parsed in a
worker thread so it never stalls the event loop. Concurrent deliveries share commits
(``GroupCommit``); each 202 follows the commit that holds its alerts. When the database cannot be
reached, the answer is a JSON 503 with ``Retry-After`` within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot import metrics as prometheus
from bot import slack_guard
from bot.openapi import describe
from bot.slack import http as slack_http
from bot.webhook_auth import DetectorAuth, RateLimiter, authenticate, check_signature
from pipeline import deadletters, observe
from pipeline.db import Database, first_line, unreachable
from pipeline.errors import ParseError
from pipeline.incidents import IncidentService
from pipeline.ingest import GroupCommit
from pipeline.observables import without_control_characters
from pipeline.plugins import Delivery, Detector
from pipeline.policy import Policy
from pipeline.worker import Door

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # 1 MiB
MAX_ALERTS = 10_000  # alerts per delivery; more is a 413 (send smaller batches)
RETRY_AFTER = 5  # seconds, in the 503 answered while the database is unreachable
PARSE_INLINE = 64 * 1024  # bytes: larger bodies are parsed in a worker thread


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_http_app(
    *,
    db: Database,
    detectors: Mapping[str, Detector],
    webhook_token: SecretStr | None,
    auth: Mapping[str, DetectorAuth] | None = None,
    bolt: AsyncApp | None = None,
    on_ingest: Callable[[], object] | None = None,
    incidents: IncidentService | None = None,
    limiter: RateLimiter | None = None,
    readiness: Mapping[str, observe.Check] | None = None,
    door: Door | None = None,
) -> FastAPI:
    """The ASGI app. ``auth`` holds per-detector tokens and signatures (detectors not in it
    use ``webhook_token``); ``on_ingest`` is called after new events are stored."""
    api = FastAPI(title="Fido", docs_url=None, redoc_url=None, openapi_url=None)
    default = DetectorAuth(token=webhook_token)
    reads = incidents or IncidentService(db=db, policy=Policy())
    rules = dict(auth or {})
    committer = GroupCommit(db)

    def known(detector: str, request: Request) -> tuple[Detector, DetectorAuth]:
        checked = authenticate(request.headers, detector, rules, default)
        parser = detectors.get(detector)
        if parser is None:
            raise HTTPException(404, f"no detector named {detector!r} is enabled")
        return parser, checked

    @api.get("/webhooks/{detector}")
    async def verify(detector: str, request: Request) -> JSONResponse:
        """One-time ownership checks some vendors make (e.g. Okta event hooks)."""
        parser, _ = known(detector, request)
        answer = parser.challenge(request.headers)
        if answer is None:
            raise HTTPException(405, "deliver alerts with POST")
        return JSONResponse(answer)

    @api.post("/webhooks/{detector}", status_code=202)
    async def webhook(detector: str, request: Request) -> JSONResponse:
        with door or contextlib.nullcontext():  # the worker yields to deliveries in flight
            return await take(detector, request)

    async def take(detector: str, request: Request) -> JSONResponse:
        parser, checked = known(detector, request)
        if limiter is not None:
            limiter.check(checked)  # 429 with Retry-After past the policy's webhook_rate
        accepted = parser.content_types
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in accepted:
            raise HTTPException(415, f"Content-Type must be {' or '.join(accepted)}")
        body = await _read_limited(request, MAX_BODY)
        if checked.signature is not None:
            check_signature(request.headers, body, checked.signature)
        try:
            # a large body is parsed in a worker thread, so it never stalls the event loop;
            # a small one costs less to parse than the hop to a thread and back
            if len(body) > PARSE_INLINE:
                parsed = await asyncio.to_thread(parser.parse, body)
            else:
                parsed = parser.parse(body)
            if len(parsed) > MAX_ALERTS:
                raise HTTPException(
                    413,
                    f"a delivery holds at most {MAX_ALERTS} alerts and this one holds "
                    f"{len(parsed)}: send them in smaller batches",
                )
            result = await committer.store(parser.name, parsed)
        except ParseError as exc:
            reason = without_control_characters(str(exc))  # a parser may quote a NUL
            async with db.session() as session:
                letter = deadletters.keep(session, detector=detector, body=body, error=reason)
                await session.commit()
            return JSONResponse({"detail": reason, "dead_letter": letter.id}, status_code=422)
        if result.created and on_ingest is not None:
            on_ingest()
        answer: dict[str, object] = {"accepted": result.created, "duplicates": result.duplicates}
        if isinstance(parsed, Delivery) and parsed.skipped:  # records read as no alert
            answer["skipped"] = [{"reason": r, "count": n} for r, n in parsed.skipped.items()]
        return JSONResponse(answer, status_code=202)

    description = describe(detectors, slack=bolt is not None)

    @api.get("/openapi.json")
    async def openapi_json() -> JSONResponse:
        return JSONResponse(description)

    @api.get("/healthz")
    async def healthz() -> Response:
        """Liveness: the event loop answers. Nothing outside the process is asked — a
        database outage must make replicas unready (``/readyz``), not restart them all."""
        return JSONResponse({"status": "ok"})

    unready: list[str] = []  # the checks failing at the last probe

    @api.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready for traffic: the database answers, its schema is current, and what
        ``readiness`` adds (Slack connected, scheduler running); else 503 naming each
        failing check."""
        results = await observe.readiness(db, readiness)
        failing = [name for name, problem in results.items() if problem is not None]
        checks = {name: problem or "ok" for name, problem in results.items()}
        if failing != unready:  # one line when readiness changes, not one per probe
            unready[:] = failing
            if failing:
                log.warning("not ready: %s", "; ".join(f"{n}: {checks[n]}" for n in failing))
            else:
                log.info("ready again")
        if failing:
            return JSONResponse(
                {"status": "unready", "failing": failing, "checks": checks}, status_code=503
            )
        return JSONResponse({"status": "ready", "checks": checks})

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(await prometheus.render(reads), media_type=prometheus.CONTENT_TYPE)

    if bolt is not None:

        @api.post("/slack/events")
        async def slack_events(request: Request) -> Response:
            # read at most MAX_BODY before Bolt checks the signature: anyone can send this
            body = await _read_limited(request, MAX_BODY)
            problem = slack_guard.refusal(request, body)  # what Bolt would raise on: a 400
            if problem is not None:
                raise HTTPException(400, problem)
            return await slack_http.handle(bolt, request, body)

    async def database_down(request: Request, exc: Exception) -> Response:
        if not unreachable(exc):
            raise exc  # a bad statement is a bug: a 500, not "try again later"
        log.error("%s: database unreachable: %s", request.url.path, first_line(exc))
        return JSONResponse(
            {"detail": "the database is unreachable; try again later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER)},
        )

    api.add_exception_handler(DBAPIError, database_down)
    api.add_exception_handler(PoolTimeout, database_down)
    return api
