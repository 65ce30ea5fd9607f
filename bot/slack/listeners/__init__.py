"""Bolt listeners: one job per module, each with a ``register(app, …)``."""

from __future__ import annotations

from collections.abc import Mapping

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, errors, home
from pipeline.engine import Engine


def register(app: AsyncApp, engine: Engine, labels: Mapping[str, str]) -> None:
    actions.register(app, engine.incidents)
    commands.register(app, engine, labels)
    home.register(app, engine, labels)
    errors.register(app)
