"""What the SaaS responder tests share: a recording stand-in transport, a server that never
answers, a port nobody listens on, and the checks every vendor's test makes."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from pipeline.errors import ResponderError
from tests.fixtures.servers import free_port

Handler = Callable[[httpx.Request], httpx.Response]


def json_response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def form(request: httpx.Request) -> dict[str, str]:
    """The form fields of a urlencoded request body (each once)."""
    fields = parse_qs(request.content.decode(), keep_blank_values=True, strict_parsing=False)
    return {key: values[0] for key, values in fields.items()}


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


class Recorder:
    """An httpx client whose transport is a vendor stand-in: keeps every request (its body
    read) and lets a test put planned answers in front of the vendor's own."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.planned: list[httpx.Response | Exception] = []
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    def plan(self, *answers: httpx.Response | Exception) -> None:
        """Answer the next requests with ``answers``, in order, whatever they ask."""
        self.planned.extend(answers)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self.planned:
            answer = self.planned.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return self.handler(request)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


@contextmanager
def silent_server() -> Iterator[str]:
    """A base URL on loopback whose server accepts connections (the kernel completes the
    handshake into the listen backlog) and never reads or answers: a hung vendor."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def refused_url() -> str:
    """A base URL on loopback where nothing listens: the connection is refused."""
    return f"http://127.0.0.1:{free_port()}"


async def fails_within(action: Awaitable[Any], seconds: float, *, match: str) -> ResponderError:
    """Await ``action``; assert it raises a ResponderError matching ``match`` in time."""
    started = time.monotonic()
    with pytest.raises(ResponderError, match=match) as caught:
        await action
    assert time.monotonic() - started < seconds
    return caught.value


def assert_secret_only_in(request: httpx.Request, secret: str, header: str, value: str) -> None:
    """The secret is in ``header`` (as ``value``) and nowhere else in the request."""
    assert request.headers[header] == value
    assert secret not in str(request.url)
    assert secret.encode() not in request.content
    others = [v for k, v in request.headers.items() if k.lower() != header.lower()]
    assert not any(secret in v for v in others)


def assert_never_told(secrets: list[str], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text[:200]}"


@contextmanager
def watching_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at DEBUG and above, from every logger (httpx's included)."""
    with caplog.at_level(logging.DEBUG):
        yield caplog
