"""Table rows are cheap to build: every default factory of a table model carries its
signature, which SQLModel otherwise works out for each default of each row it builds
(for the built-in ``list``, by parsing its text signature: a millisecond per Incident)."""

from __future__ import annotations

from sqlmodel import SQLModel

from pipeline import models


def test_every_table_default_factory_carries_its_signature() -> None:
    tables = [
        cls
        for cls in vars(models).values()
        if isinstance(cls, type) and issubclass(cls, SQLModel) and hasattr(cls, "__table__")
    ]
    assert len(tables) >= 10
    factories = [
        (table.__name__, name, field.default_factory)
        for table in tables
        for name, field in table.model_fields.items()
        if field.default_factory is not None
    ]
    assert factories  # the check below looks at something
    missing = [(t, n) for t, n, f in factories if "__signature__" not in vars(f)]
    assert missing == []


def test_rows_get_fresh_defaults() -> None:
    first, second = models.Incident(title="a"), models.Incident(title="b")
    assert first.observables == {} and first.detectors == []
    first.detectors.append("generic")
    assert second.detectors == []  # not one shared list
    assert first.created_at.tzinfo is not None
