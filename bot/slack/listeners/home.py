"""App Home: refreshed each time someone opens Fido's tab."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import col, select

from bot.slack.home import home_view
from pipeline import queue
from pipeline.models import Action, Incident, IncidentStatus
from pipeline.worker import Pipeline


def register(app: AsyncApp, pipeline: Pipeline) -> None:
    @app.event("app_home_opened")
    async def opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") not in (None, "home"):
            return
        async with pipeline.db.session() as session:
            incidents = (
                await session.exec(
                    select(Incident)
                    .where(Incident.status == IncidentStatus.open.value)
                    .order_by(col(Incident.score).desc(), col(Incident.id).desc())
                    .limit(15)
                )
            ).all()
            actions = (
                await session.exec(select(Action).order_by(col(Action.id).desc()).limit(10))
            ).all()
        pending = await queue.pending_count(pipeline.db)
        await client.views_publish(
            user_id=event["user"], view=home_view(incidents, actions, pending_events=pending)
        )
