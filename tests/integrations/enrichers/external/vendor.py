"""A stand-in for one SaaS API: answers from the vendor's documented payloads and records
every request, so a test can check both what we sent and what we made of the answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pipeline.plugins import Context, Lookup, build_plugin, lookups

PAYLOADS = Path(__file__).parent / "payloads"

Handler = Callable[[httpx.Request], httpx.Response]


def payload(name: str) -> Any:
    """A stored vendor payload, e.g. ``payload("virustotal/file.json")``."""
    return json.loads((PAYLOADS / name).read_text())


class FakeVendor:
    """Answers queued responses in order (or calls ``handler``), keeping the requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.queue: list[httpx.Response | Exception] = []
        self.handler: Handler | None = None
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    def reply(
        self,
        status: int = 200,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if content is None:
            content = json.dumps(json_body).encode()
            headers = {"content-type": "application/json", **(headers or {})}
        self.queue.append(httpx.Response(status, content=content, headers=headers))

    def reply_payload(self, name: str, status: int = 200, **kwargs: Any) -> None:
        self.reply(status, json_body=payload(name), **kwargs)

    def fail(self, exc: Exception) -> None:
        self.queue.append(exc)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self.handler is not None:
            return self.handler(request)
        if not self.queue:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def assert_secret_only_in_header(request: httpx.Request, secret: str, header: str) -> None:
    """The secret is the value of ``header`` and appears nowhere else in the request."""
    assert request.headers[header] == secret
    assert secret not in str(request.url)
    assert secret.encode() not in request.content
    others = [v for k, v in request.headers.items() if k.lower() != header.lower()]
    assert not any(secret in v for v in others)


def build(plugin: Any, *, options: dict[str, Any], context: Context) -> Any:
    """The lookup as ``fido serve`` builds it: its options checked against its ``Options``,
    then its ``build`` (``pipeline.plugins.build_plugin``)."""
    built: Lookup = build_plugin(lookups, plugin.name, options, context)
    assert isinstance(built, plugin)
    return built
