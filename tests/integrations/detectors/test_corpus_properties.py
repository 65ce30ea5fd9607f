"""Every detector with a corpus — the vendors', the SIEMs', any added later — on its own
samples damaged at random: fields removed, nulled, emptied or replaced by arbitrary JSON.
It either returns well-formed events (or a delivery skipped with reasons) or raises
ParseError: never another exception, never a value the database would refuse."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations import load_all
from pipeline.plugins import detectors
from tests.integrations.detectors.edr.test_properties import _paths, check, json_values

load_all()
HERE = Path(__file__).parent
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _documents(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    try:
        return [json.loads(text)]
    except ValueError:
        documents = []
        for line in text.splitlines():
            try:
                documents.append(json.loads(line[line.find("{") :]))
            except ValueError:
                continue  # a log line of a line-based detector
        return documents


CORPUS: dict[str, list[Any]] = {}
for folder in sorted(HERE.glob("*/payloads/*")):
    if folder.is_dir() and folder.name in detectors.names():
        for sample in sorted(folder.iterdir()):
            if not sample.name.endswith(".expected.json"):
                CORPUS.setdefault(folder.name, []).extend(_documents(sample))
CORPUS = {name: documents for name, documents in CORPUS.items() if documents}


@st.composite
def damaged(draw: st.DrawFn, name: str) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(CORPUS[name])))
    for _ in range(draw(st.integers(1, 6))):
        paths = list(_paths(document))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        choice = draw(st.integers(0, 2))
        if choice == 0:
            del parent[path[-1]]
        elif choice == 1:
            parent[path[-1]] = draw(st.sampled_from([None, "", "N/A", "-", [], {}, 0]))
        else:
            parent[path[-1]] = draw(json_values)
    return document


def test_every_json_detector_has_a_corpus() -> None:
    line_based = {"panos", "clamav", "fail2ban", "generic"}
    missing = set(detectors.names()) - set(CORPUS) - line_based
    assert not {name for name in missing if not name.startswith("test_")}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_damaged_samples_parse_or_raise_parse_error(name: str) -> None:
    @SETTINGS
    @given(st.lists(damaged(name), min_size=1, max_size=3), st.booleans())
    def run(documents: list[Any], as_lines: bool) -> None:
        if as_lines:
            body = "\n".join(json.dumps(d) for d in documents).encode()
        else:
            body = json.dumps(documents if len(documents) > 1 else documents[0]).encode()
        check(detectors.get(name)(), body)

    run()
