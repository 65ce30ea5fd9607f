"""Bolt listeners: one job per module, each with a ``register(app, pipeline)``."""

from __future__ import annotations

from collections.abc import Mapping

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, errors, home
from pipeline.worker import Pipeline


def register(app: AsyncApp, pipeline: Pipeline, labels: Mapping[str, str]) -> None:
    actions.register(app, pipeline)
    commands.register(app, pipeline, labels)
    home.register(app, pipeline)
    errors.register(app)
