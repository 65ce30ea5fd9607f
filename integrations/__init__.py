"""The edges to other systems: detectors, enrichers, responders.

Importing :func:`load_all` registers every built-in plugin in ``pipeline.plugins``.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Import every integration module so each registers itself."""
    for package in (
        "integrations.detectors",
        "integrations.enrichers",
        "integrations.responders",
        "integrations.sources",
    ):
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{package}.{info.name}")
