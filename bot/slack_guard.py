"""What ``/slack/events`` checks before Bolt reads a request.

Bolt parses a request's body (and builds its context from it) before it verifies the
signature, and both its parsing and its listener matching index into the payload as Slack
documents it: a JSON array, invalid UTF-8, or ``actions`` holding a list instead of an
object raised inside Bolt and became a 500. ``refusal`` returns why a body is not shaped
like anything Slack sends (the caller answers 400), or None. Only the fields Bolt and
Fido's listeners read are checked, each against the type Slack's documentation gives it;
any other field passes as it is.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from bot.slack import http as slack_http

_NULL = type(None)
_STR = (str,)
# field → the types Slack sends it as; a dict entry also checks that object's own fields
_OBJECT: dict[str, Any] = {
    "type": _STR,
    "token": _STR,
    "callback_id": _STR,
    "trigger_id": _STR,
    "response_url": _STR,
    "api_app_id": _STR,
    "team_id": _STR,
    "user_id": _STR,
    "channel_id": _STR,
    "enterprise_id": (str, _NULL),
    "is_enterprise_install": (bool, str),
    "user": {"id": _STR, "team_id": _STR, "name": _STR, "username": _STR},
    "team": {"id": _STR, "domain": _STR, "enterprise_id": _STR},
    "enterprise": {"id": _STR, "name": _STR},
    "channel": {"id": _STR, "name": _STR},
    "container": {
        "type": _STR,
        "message_ts": _STR,
        "thread_ts": _STR,
        "channel_id": _STR,
        "view_id": _STR,
    },
    "message": {"ts": _STR, "thread_ts": _STR, "text": _STR, "user": _STR},
    "view": {
        "id": _STR,
        "callback_id": _STR,
        "type": _STR,
        "team_id": _STR,
        "app_id": _STR,
        "private_metadata": _STR,
    },
    "state": {"values": (dict,)},
    "event": {"type": _STR, "subtype": _STR, "channel": (str, dict), "user": (str, dict)},
}
_ITEMS: dict[str, dict[str, tuple[type, ...]]] = {  # lists of objects
    "actions": {"action_id": _STR, "block_id": _STR, "type": _STR, "value": _STR, "name": _STR},
    "authorizations": {
        "enterprise_id": (str, _NULL),
        "team_id": (str, _NULL),
        "user_id": _STR,
        "is_bot": (bool,),
        "is_enterprise_install": (bool,),
    },
}
# objects that may be null where Slack sends null
_NULLABLE = {"team", "enterprise", "channel", "message", "view", "container", "state"}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fields(name: str, body: dict[str, Any], rules: dict[str, Any]) -> str | None:
    for field, rule in rules.items():
        if field not in body:
            continue
        value = body[field]
        where = f"{name}.{field}" if name else field
        if isinstance(rule, dict):
            if value is None and field in _NULLABLE:
                continue
            if not isinstance(value, dict):
                return f"{where} must be an object, not {_kind(value)}"
            problem = _fields(where, value, rule)
            if problem:
                return problem
        elif not isinstance(value, rule):
            return f"{where} must not be {_kind(value)}"
    return None


def _shape(body: Any) -> str | None:
    if not isinstance(body, dict):
        return f"the payload must be an object, not {_kind(body)}"
    problem = _fields("", body, _OBJECT)
    if problem:
        return problem
    for field, rules in _ITEMS.items():
        if field not in body:
            continue
        items = body[field]
        if not isinstance(items, list):
            return f"{field} must be a list, not {_kind(items)}"
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                return f"{field}[{index}] must be an object, not {_kind(item)}"
            problem = _fields(f"{field}[{index}]", item, rules)
            if problem:
                return problem
    if body.get("type") == "block_actions":
        actions = body.get("actions")
        if not actions or not all("action_id" in action for action in actions):
            return "a block_actions payload needs actions, each with an action_id"
    return None


def refusal(request: Request, body: bytes) -> str | None:
    """Why ``body`` is not a Slack request Bolt can read, or None."""
    try:
        parsed = slack_http.bolt_request(request, body).body
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        return "not a Slack request: the body cannot be read"
    problem = _shape(parsed)
    return f"not a Slack request: {problem}" if problem else None
