"""The OpenAPI description of Fido's HTTP API, served at ``GET /openapi.json``.

Written by hand rather than derived from the handlers: the webhook reads its body itself
(any JSON, or text for log-line detectors), so what it accepts and answers is stated here.
``/slack/events`` is Slack's own protocol, described as opaque. A test checks that every
route the app serves is described and every described route is served.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


def _error(description: str, **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _DETAIL}},
    }
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "integer"}}
            for name, text in headers.items()
        }
    return answer


_ALERT = {  # a generic alert; every detector's own format is accepted at its name too
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string", "minLength": 1},
        "severity": {"type": "string", "enum": ["critical", "high", "medium", "low", "info"]},
        "occurred_at": {"type": "string", "format": "date-time"},
        "user": {"type": "string"},
        "host": {"type": "string"},
        "src_ip": {"type": "string", "format": "ipv4"},
        "dst_ip": {"type": "string", "format": "ipv4"},
        "hash": {"type": "string"},
        "domain": {"type": "string"},
        "url": {"type": "string"},
    },
    "required": ["title"],
}

_REFUSALS = {
    "401": _error("Missing or invalid token or signature"),
    "404": _error("No detector of that name is enabled (told only to holders of the global token)"),
    "413": _error("Body over 1 MiB, or more than 10,000 alerts in one delivery"),
    "415": _error("A Content-Type the detector does not accept"),
    "422": {
        "description": "Not an alert this detector reads (kept as a dead letter when authentic)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "detail": {"type": "string"},
                        "dead_letter": {"type": "integer"},
                    },
                    "required": ["detail"],
                }
            }
        },
    },
    "429": _error(
        "More deliveries with this token than the policy's webhook_rate",
        **{"Retry-After": "Seconds until a delivery is taken again"},
    ),
    "503": _error(
        "The database is unreachable; nothing was stored",
        **{"Retry-After": "Seconds to wait before delivering again"},
    ),
}


def describe(detectors: Iterable[str], *, slack: bool, title: str = "Fido") -> dict[str, Any]:
    """The OpenAPI 3.1 document for an app serving ``detectors`` (and ``/slack/events``
    when ``slack``)."""
    detector = {
        "name": "detector",
        "in": "path",
        "required": True,
        "description": "An enabled detector's name",
        "schema": {"type": "string", "enum": sorted(detectors) or ["generic"]},
    }
    paths: dict[str, Any] = {
        "/webhooks/{detector}": {
            "parameters": [detector],
            "post": {
                "summary": "Deliver alerts",
                "description": "Answered 202 once the alerts are committed to the database.",
                "operationId": "deliver",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [_ALERT, {"type": "array", "items": _ALERT}]}
                        },
                        "text/plain": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "202": {
                        "description": "Stored: the new events' ids, and the ids already stored",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "accepted": {"type": "array", "items": {"type": "integer"}},
                                        "duplicates": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                        },
                                    },
                                    "required": ["accepted", "duplicates"],
                                }
                            }
                        },
                    },
                    **_REFUSALS,
                },
            },
            "get": {
                "summary": "Answer a vendor's ownership check (e.g. Okta event hooks)",
                "operationId": "verify",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "The vendor's challenge answered",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "405": _error("This detector makes no ownership check: deliver with POST"),
                    **{k: v for k, v in _REFUSALS.items() if k in ("401", "404", "503")},
                },
            },
        },
        "/healthz": {
            "get": {
                "summary": "Alive: the process answers (liveness; nothing else is checked)",
                "operationId": "healthz",
                "responses": {
                    "200": {"description": "Alive", "content": {"application/json": {}}},
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Ready for traffic: database, schema, Slack, scheduler",
                "operationId": "readyz",
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {}}},
                    "503": {"description": "A check fails", "content": {"application/json": {}}},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {"description": "Text exposition format", "content": {"text/plain": {}}}
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This description",
                "operationId": "openapi",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                },
            }
        },
    }
    if slack:
        paths["/slack/events"] = {
            "post": {
                "summary": "Slack's HTTP mode (events, interactions, slash commands)",
                "description": "Slack's own protocol, signed with the app's signing secret "
                "and verified by Bolt; opaque here.",
                "operationId": "slack",
                "requestBody": {
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": {}},
                        "application/json": {"schema": {}},
                    }
                },
                "responses": {
                    "200": {"description": "Handled"},
                    "400": {"description": "Not a Slack request"},
                    "401": {"description": "Missing or invalid Slack signature"},
                    "404": {"description": "No listener for this request"},
                    "413": {"description": "Body over 1 MiB"},
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": "Detector webhooks, health and metrics of a Fido replica.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
