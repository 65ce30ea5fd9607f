"""The HTTP side of ``fido serve``: detector webhooks, Slack's HTTP mode, health.

``POST /webhooks/{detector}`` answers 202 only once the alert is committed to the
database; every refusal is a 4xx with a JSON ``detail`` saying why, and stores nothing.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from sqlalchemy import text

from pipeline import deadletters
from pipeline.db import Database
from pipeline.errors import ParseError
from pipeline.ingest import ingest
from pipeline.plugins import Detector

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # 1 MiB


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


def _check_token(request: Request, token: SecretStr | None) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    expected = token.get_secret_value().encode() if token else b""
    if (
        not expected
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(presented.strip().encode(), expected)
    ):
        raise HTTPException(
            401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def build_http_app(
    *,
    db: Database,
    detectors: Mapping[str, Detector],
    webhook_token: SecretStr | None,
    bolt: AsyncApp | None = None,
    on_ingest: Any = None,
) -> FastAPI:
    """The ASGI app. ``on_ingest`` (no arguments) is called after new events are stored."""
    api = FastAPI(title="Fido", docs_url=None, redoc_url=None, openapi_url=None)

    @api.post("/webhooks/{detector}", status_code=202)
    async def webhook(detector: str, request: Request) -> JSONResponse:
        _check_token(request, webhook_token)
        parser = detectors.get(detector)
        if parser is None:
            raise HTTPException(404, f"no detector named {detector!r} is enabled")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HTTPException(415, "Content-Type must be application/json")
        body = await _read_limited(request, MAX_BODY)
        try:
            async with db.session() as session:
                result = await ingest(session=session, detector=parser, body=body)
        except ParseError as exc:
            async with db.session() as session:
                letter = deadletters.keep(session, detector=detector, body=body, error=str(exc))
                await session.commit()
            return JSONResponse({"detail": str(exc), "dead_letter": letter.id}, status_code=422)
        if result.created and on_ingest is not None:
            on_ingest()
        return JSONResponse(
            {"accepted": result.created, "duplicates": result.duplicates}, status_code=202
        )

    @api.get("/healthz")
    async def healthz() -> Response:
        try:
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.error("health check: database unreachable: %s", exc)
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    if bolt is not None:
        handler = AsyncSlackRequestHandler(bolt)

        @api.post("/slack/events")
        async def slack_events(request: Request) -> Response:
            return await handler.handle(request)

    return api
