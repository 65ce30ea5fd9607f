"""A plugin's options checked against its ``Options`` model, each problem worded for people.

Used by the generic builder (``pipeline.plugins.build_plugin``: one ConfigError naming the
plugin and every key) and by ``fido check-config`` (``pipeline.policy_file``: each problem
at its line and column).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


@dataclass(frozen=True)
class OptionError:
    """One thing wrong with a plugin's options. ``loc`` is the path inside the options
    (``()``: the options as a whole); ``unknown``: the key itself is not allowed."""

    loc: tuple[str | int, ...]
    unknown: bool
    text: str  # e.g. "unknown option 'managment_port', did you mean 'management_port'?"


def option_errors(model: type[BaseModel], options: Mapping[str, Any]) -> list[OptionError]:
    """Every problem pydantic finds in ``options``, unknown keys first (a typo often
    explains the key reported missing); [] when they are valid."""
    if not isinstance(options, Mapping):
        return [OptionError((), False, f"options must be a mapping, not {options!r:.40}")]
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        errors = [_error(model, error) for error in exc.errors()]
        return sorted(errors, key=lambda error: not error.unknown)
    return []


def describe_errors(errors: list[OptionError]) -> str:
    return "; ".join(error.text for error in errors)


def _error(model: type[BaseModel], error: ErrorDetails) -> OptionError:
    loc = tuple(part for part in error["loc"] if _is_key(part))
    key = ".".join(str(part) for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        text = f"unknown option {key!r}"
        if len(loc) == 1:
            close = difflib.get_close_matches(str(loc[0]), list(model.model_fields), n=1)
            if close:
                text += f", did you mean {close[0]!r}?"
        return OptionError(loc, True, text)
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "missing":
        return OptionError(loc, False, f"option {key!r} is required")
    if not loc:
        return OptionError(loc, False, f"options: {message}")
    return OptionError(loc, False, f"option {key!r}: {message}")


def _is_key(part: Any) -> bool:
    """A field name or an index, not a tag pydantic adds for a validator ("function-after[…]")."""
    return isinstance(part, int) or "[" not in part
