"""Sources built as ``fido serve`` builds them: options checked against the source's
``Options``, then its ``build`` with a context carrying its name and detector."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.plugins import Context, Source, build_plugin, detectors, sources


def build_source(
    kind: str,
    options: Mapping[str, Any],
    *,
    name: str = "s",
    detector: str = "generic",
    environ: Mapping[str, str] | None = None,
    http: Any = None,
    retry: Any = None,
) -> Any:
    """The ``kind`` source called ``name``, for the registered ``detector`` (built with
    its default options); ``retry`` replaces an API poller's retry policy."""
    parser = build_plugin(detectors, detector, {}, Context())
    context = Context(http, environ, name=name, detector=parser)
    source: Source = build_plugin(sources, kind, options, context, who=f"source {name} ({kind})")
    if retry is not None:
        source.api.policy = retry  # type: ignore[attr-defined]  # its VendorHTTP
    return source
