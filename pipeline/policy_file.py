"""Reading the policy file with every problem placed at its line and column.

``check_policy(path)`` returns every problem at once — YAML syntax, duplicate keys, and each
pydantic error of ``Policy`` — as ``PATH:LINE:COL: where: message``, so a team can fix a
policy in one pass. ``load_policy(path)`` returns the ``Policy`` or raises
``PolicyFileError`` (a ``ConfigError``) listing them all, one per line.

Positions come from PyYAML's node tree (``SafeLoader``): each error's ``loc`` is walked
down that tree to the key it names (an unknown key), the value it names (a bad value), or
the nearest key that exists (a missing one).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipeline.errors import ConfigError
from pipeline.policy import Policy
from pipeline.policy_plugins import PluginProblem, plugin_problems

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file; ``line`` and ``column`` are 1-based, ``None``
    when the problem is the file itself (missing, unreadable)."""

    path: str
    line: int | None
    column: int | None
    where: str  # dotted key path, e.g. "scoring.threat.cap"; "" for the file as a whole
    message: str

    def __str__(self) -> str:
        at = self.path if self.line is None else f"{self.path}:{self.line}:{self.column}"
        return f"{at}: {self.where}: {self.message}" if self.where else f"{at}: {self.message}"


class PolicyFileError(ConfigError):
    """The policy file is missing, unreadable or invalid; ``problems`` says where."""

    def __init__(self, path: str, problems: Sequence[PolicyProblem]) -> None:
        self.path = path
        self.problems = list(problems)
        count = f"{len(self.problems)} problem{'' if len(self.problems) == 1 else 's'}"
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"FIDO_CONFIG: {count} in the policy {path}:\n{lines}")


def check_policy(path: str | Path, *, plugins: bool = False) -> list[PolicyProblem]:
    """Every problem in the policy file at ``path``, in file order; empty when valid.

    ``plugins``: also check the plugins it names, and their options against each one's
    ``Options`` model (the caller has imported the integrations: ``load_all``)."""
    result = _read(str(path), plugins=plugins)
    return [] if isinstance(result, Policy) else result


def load_policy(path: str | Path, *, plugins: bool = False) -> Policy:
    """The policy in the file at ``path``; an empty file gives the built-in defaults.

    Raises ``PolicyFileError`` listing every problem, one per line (with ``plugins``, the
    plugins' options too, as ``check_policy``)."""
    result = _read(str(path), plugins=plugins)
    if isinstance(result, Policy):
        return result
    raise PolicyFileError(str(path), result)


# -- reading ------------------------------------------------------------------------------


def _read(path: str, *, plugins: bool = False) -> Policy | list[PolicyProblem]:
    def problem(message: str, where: str = "", node: Node | None = None) -> PolicyProblem:
        if node is None:
            return PolicyProblem(path, None, None, where, message)
        mark = node.start_mark
        return PolicyProblem(path, mark.line + 1, mark.column + 1, where, message)

    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return [problem("policy file does not exist")]
    except IsADirectoryError:
        return [problem("is a directory, not a policy file")]
    except OSError as exc:
        return [problem(f"cannot read the policy file: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw[: exc.start].decode("utf-8", errors="replace"))
        return [PolicyProblem(path, line, column, "", "not UTF-8 text")]

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        duplicates = list(_duplicates(root, path)) if root is not None else []
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        return [_syntax_problem(path, exc)]
    except yaml.reader.ReaderError as exc:
        line, column = _position(text[: exc.position])
        return [PolicyProblem(path, line, column, "", f"invalid YAML: {exc.reason}")]
    except ValueError as exc:  # a scalar its tag cannot hold: 2027-13-45, !!int x
        bad = _unconstructable(root) if root is not None else None
        return [problem(f"invalid YAML value: {exc}", "", bad)]
    finally:
        loader.dispose()

    if root is None or data is None:
        data = {}
    if root is not None and not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({data!r:.40})"
        return [problem(f"the policy must be a mapping of keys to values, not {kind}", "", root)]
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        assert root is not None  # an empty file is a valid (default) policy
        found = [_validation_problem(path, root, error) for error in exc.errors()]
        return _in_file_order(duplicates + found)
    if plugins:
        duplicates += [_plugin_problem(path, root, problem) for problem in plugin_problems(policy)]
    return _in_file_order(duplicates) if duplicates else policy


def _position(before: str) -> tuple[int, int]:
    """1-based line and column just after ``before``."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


def _syntax_problem(path: str, exc: yaml.MarkedYAMLError) -> PolicyProblem:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context or 'cannot be parsed'}"
    if exc.problem and exc.context and not exc.context.startswith("while"):
        message = f"invalid YAML: {exc.context}, {exc.problem}"  # "expected …, but found …"
    elif exc.problem and exc.context:
        where = ""
        if exc.context_mark is not None and exc.context_mark is not exc.problem_mark:
            where = f" at {exc.context_mark.line + 1}:{exc.context_mark.column + 1}"
        message += f" ({exc.context}{where})"
    if mark is None:
        return PolicyProblem(path, None, None, "", message)
    return PolicyProblem(path, mark.line + 1, mark.column + 1, "", message)


def _unconstructable(root: Node) -> Node | None:
    """The first scalar whose tag cannot make a value of it."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ScalarNode):
            try:
                yaml.constructor.SafeConstructor().construct_object(node)
            except (ValueError, yaml.YAMLError):
                return node
        elif isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
    return None


def _in_file_order(problems: list[PolicyProblem]) -> list[PolicyProblem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


# -- duplicate keys -----------------------------------------------------------------------


def _duplicates(root: Node, path: str) -> Iterator[PolicyProblem]:
    """Keys given twice in one mapping (PyYAML would silently keep the last)."""
    seen_nodes: set[int] = set()
    stack: list[tuple[Node, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, where = stack.pop()
        if id(node) in seen_nodes:  # an alias: already walked where the anchor is
            continue
        seen_nodes.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((item, (*where, i)) for i, item in enumerate(node.value))
        elif isinstance(node, MappingNode):
            first: dict[tuple[str, str], Node] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    continue
                name = _key_value(key)
                stack.append((value, (*where, name)))
                if not isinstance(key, ScalarNode):
                    continue
                earlier = first.setdefault((key.tag, key.value), key)
                if earlier is not key:
                    mark = earlier.start_mark
                    yield PolicyProblem(
                        path,
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                        _dotted((*where, name)),
                        f"duplicate key (first given at line {mark.line + 1}, column "
                        f"{mark.column + 1}; only the last one would count)",
                    )


# -- placing pydantic errors ----------------------------------------------------------------


def _validation_problem(path: str, root: Node, error: ErrorDetails) -> PolicyProblem:
    loc = tuple(error["loc"])
    kind = error["type"]
    node = _locate(root, loc, key_for_last=kind == "extra_forbidden")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        message = "unknown key"
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if loc else []
        if close:
            message += f", did you mean {close[0]!r}?"
        if allowed:
            message += f" (expected one of: {', '.join(allowed)})"
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    mark = node.start_mark
    return PolicyProblem(path, mark.line + 1, mark.column + 1, _dotted(loc), message)


def _locate(root: Node, loc: tuple[Any, ...], *, key_for_last: bool) -> Node:
    """The node an error's ``loc`` names: its value, or its key when ``key_for_last`` (an
    unknown key), a collection's or an empty value's key, or the nearest that exists."""
    node, key = root, None
    for i, part in enumerate(loc):
        if part == "[key]" and key is not None:  # a dict key that failed validation
            return key
        if isinstance(node, MappingNode):
            pair = next((p for p in reversed(node.value) if _same_key(p[0], part)), None)
            if pair is None:
                break
            key, node = pair
            if key_for_last and i == len(loc) - 1:
                return key
        elif isinstance(node, SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            key, node = None, node.value[part]
        else:  # a union member's tag, or a scalar where a collection was expected
            break
    empty = isinstance(node, ScalarNode) and node.tag == _NULL_TAG and node.value == ""
    if key is not None and (empty or not isinstance(node, ScalarNode)):
        return key
    return node


def _same_key(node: Node, part: Any) -> bool:
    if not isinstance(node, ScalarNode):
        return False
    value = _key_value(node)
    return bool(value == part and type(value) is type(part)) or str(value) == str(part)


def _key_value(node: Node) -> Any:
    if not isinstance(node, ScalarNode):
        return node.value
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except (ValueError, yaml.YAMLError):
        return node.value


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc if p != "[key]") or "(top level)"


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    """The keys the model at ``loc`` (a path into ``Policy``) accepts; [] if not a model."""
    kind: Any = Policy
    parts = list(loc)
    while parts:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(parts.pop(0)))
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) is dict:
            parts.pop(0)
            kind = get_args(kind)[1]
        elif get_origin(kind) is list:
            parts.pop(0)
            kind = get_args(kind)[0]
        else:
            return []
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return list(kind.model_fields)
    return []


def _unwrap(kind: Any) -> Any:
    """``X | None`` → ``X``; other unions are left alone."""
    if get_origin(kind) in (Union, types.UnionType):
        members = [a for a in get_args(kind) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return kind


def _plugin_problem(path: str, root: Node | None, problem: PluginProblem) -> PolicyProblem:
    """A plugin's problem at its place in the file (the file's start for a default the
    file does not spell out, e.g. the built-in ``enrichers``)."""
    node = None
    for loc in (problem.loc, problem.fallback):
        if root is not None and loc:
            found = _locate(root, loc, key_for_last=problem.unknown_key)
            if found is not root:
                node = found
                break
    where = _dotted(problem.loc)
    if node is None:
        return PolicyProblem(path, None, None, where, problem.message)
    mark = node.start_mark
    return PolicyProblem(path, mark.line + 1, mark.column + 1, where, problem.message)
