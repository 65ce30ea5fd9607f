"""Migration 0003 creates exactly the new tables the models describe, and reverses."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

from pipeline import db as database
from pipeline.policy import LookupsPolicy, Policy, ProviderPolicy

TABLES = {"lookup_cache", "lookup_quota", "deferred_lookup", "lookup_waiter"}


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in TABLES


def differences(url: str) -> list[Any]:
    """What autogenerate would still change in the new tables (nothing, when in step)."""
    engine = create_engine(database.sync_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"include_object": _ours, "compare_type": True}
            )
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(database.sync_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_migration_matches_the_models_and_reverses(database_url: str) -> None:
    database.upgrade(database_url)
    assert TABLES <= tables(database_url)
    assert differences(database_url) == []
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS))
    config.attributes["fido_url"] = database.sync_url(database_url)
    command.downgrade(config, "0002")
    assert not TABLES & tables(database_url)
    database.upgrade(database_url)
    assert TABLES <= tables(database_url)


def test_policy_defaults_and_overrides() -> None:
    rules = Policy()
    assert rules.lookups.provider("virustotal").per_minute == 4
    assert rules.lookups.provider("virustotal").per_day == 500
    assert rules.lookups.provider("abuseipdb").per_minute is None  # unlimited unless set
    custom = LookupsPolicy.model_validate(
        {"providers": {"virustotal": {"per_day": 20000, "breaker_failures": 2}}}
    )
    vt = custom.provider("virustotal")
    assert (vt.per_minute, vt.per_day, vt.breaker_failures) == (4, 20000, 2)
    premium = LookupsPolicy(providers={"virustotal": ProviderPolicy(per_minute=None)})
    assert premium.provider("virustotal").per_minute is None  # explicitly unlimited
    assert rules.lookups.cache("anything").ttl_seconds == 86400
