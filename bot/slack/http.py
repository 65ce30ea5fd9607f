"""Slack's HTTP mode, in front of Bolt.

Bolt 1.x decides a form body is an interactive ``payload=…`` whenever the text "payload"
appears anywhere in it, so a slash command such as ``/fido lookup hash payload.exe`` reaches
no listener. We hand Bolt the same raw body (so it still verifies the signature over it),
and only correct the parsed form when there is no ``payload`` field.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from starlette.requests import Request
from starlette.responses import Response


def bolt_request(request: Request, body: bytes) -> AsyncBoltRequest:
    bolt = to_async_bolt_request(request, body)
    if not bolt.body and bolt.raw_body and not bolt.raw_body.lstrip().startswith("{"):
        form = dict(parse_qsl(bolt.raw_body, keep_blank_values=True))
        if "payload" not in form:
            bolt.body = form
            bolt.context = build_async_context(AsyncBoltContext({}), form)
    return bolt


async def handle(app: AsyncApp, request: Request, body: bytes) -> Response:
    """Dispatch one request to Bolt. ``body`` is the request's body, read by the caller
    with a size limit (``bot/server.py``): the signature is only checked after reading,
    so reading without one lets anyone fill the memory."""
    return to_starlette_response(await app.async_dispatch(bolt_request(request, body)))
