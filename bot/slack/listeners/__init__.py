"""Bolt listeners: one job per module, each with a ``register(app, pipeline)``."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, errors
from pipeline.worker import Pipeline


def register(app: AsyncApp, pipeline: Pipeline) -> None:
    actions.register(app, pipeline)
    errors.register(app)
