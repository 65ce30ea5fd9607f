"""App Home: refreshed each time someone opens Fido's tab."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.home import home_view
from pipeline.incidents import IncidentService


def register(app: AsyncApp, incidents: IncidentService) -> None:
    @app.event("app_home_opened")
    async def opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") not in (None, "home"):
            return
        view = home_view(
            await incidents.open_incidents(limit=15),
            await incidents.recent_actions(limit=10),
            pending_events=await incidents.pending_events(),
            switches=await incidents.switches(),
        )
        await client.views_publish(user_id=event["user"], view=view)
