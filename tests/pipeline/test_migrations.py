"""The Alembic migrations build exactly the schema the models describe, and go both ways."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from pipeline.db import MIGRATIONS, sync_url, upgrade


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["fido_url"] = sync_url(url)
    return cfg


def test_models_and_migrations_agree(database_url: str) -> None:
    upgrade(database_url)
    command.check(config(database_url))  # raises when autogenerate would find a difference


def test_downgrade_to_nothing_and_back(database_url: str) -> None:
    upgrade(database_url)
    command.downgrade(config(database_url), "base")
    upgrade(database_url)
    command.check(config(database_url))
