"""The layering docs/ARCHITECTURE.md describes, checked on every import in the code:
``pipeline`` knows neither the bot, nor the integrations, nor Slack or the web framework;
``integrations`` know the pipeline only through its public protocols and types."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# what the pipeline must never import: the layers above it and their frameworks
PIPELINE_FORBIDDEN = (
    "bot",
    "integrations",
    "slack_bolt",
    "slack_sdk",
    "fastapi",
    "starlette",
    "uvicorn",
    "typer",
    "prometheus_client",
)
# the pipeline's public face for plugins: protocols, errors, observables
INTEGRATIONS_MAY_USE = {"pipeline.plugins", "pipeline.errors", "pipeline.observables"}
INTEGRATIONS_MAY_USE_NAMES = {"pipeline.models": {"Severity"}}  # a type, not the tables


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) for every import in ``path``, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".", 1)[0]


@pytest.mark.parametrize("path", modules("pipeline"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pipeline_imports_no_layer_above_it(path: Path) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for line, module, _ in imports(path)
        if top(module) in PIPELINE_FORBIDDEN
    ]
    assert wrong == []


@pytest.mark.parametrize("path", modules("integrations"), ids=lambda p: str(p.relative_to(ROOT)))
def test_integrations_use_only_the_pipelines_public_types(path: Path) -> None:
    wrong = []
    for line, module, names in imports(path):
        where = f"{path.relative_to(ROOT)}:{line}: {module}"
        if top(module) == "bot":
            wrong.append(where)
        elif top(module) == "pipeline" and module not in INTEGRATIONS_MAY_USE:
            allowed = INTEGRATIONS_MAY_USE_NAMES.get(module, set())
            if not names or not set(names) <= allowed:
                wrong.append(f"{where} ({', '.join(names) or 'the module'})")
    assert wrong == []


def test_the_check_finds_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: an import hidden in a function is still found."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from bot.slack import app\n    import pipeline.db\n")
    assert [(m, n) for _, m, n in imports(sample)] == [("bot.slack", ["app"]), ("pipeline.db", [])]
