"""What approval asks Slack about people (bot/slack/people.py) and the channel notices
(SlackNotifier.notice), against the fake Slack answering as Slack documents."""

from __future__ import annotations

import pytest

from bot.settings import Settings
from bot.slack.app import web_client
from bot.slack.notifier import SlackNotifier
from bot.slack.people import SlackPeople
from pipeline.errors import DeliveryError, IntegrationError
from tests.fixtures.slack import FakeSlack


def client(slack: FakeSlack):  # type: ignore[no-untyped-def]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        SLACK_BOT_TOKEN=slack.token,
        SLACK_API_URL=slack.base_url,
    )
    return web_client(settings)


async def test_email_and_group_membership_are_asked_once_and_cached(fake_slack: FakeSlack) -> None:
    fake_slack.emails["UBOB"] = "bob@corp.example"
    fake_slack.usergroups["SSECOPS"] = ["UBOB"]
    people = SlackPeople(client(fake_slack))
    assert await people.email("UBOB") == "bob@corp.example"
    assert await people.email("UNOMAIL") is None  # no e-mail in the profile
    assert await people.in_group("UBOB", "SSECOPS")
    assert not await people.in_group("UEVE", "SSECOPS")
    assert await people.email("UBOB") == "bob@corp.example"
    assert len(fake_slack.calls("users.info")) == 2  # the second UBOB came from the cache
    assert len(fake_slack.calls("usergroups.users.list")) == 1


async def test_slack_errors_are_integration_errors(fake_slack: FakeSlack) -> None:
    people = SlackPeople(client(fake_slack))
    with pytest.raises(IntegrationError, match="no_such_subteam"):
        await people.in_group("UBOB", "SNOPE")
    with pytest.raises(IntegrationError, match="user_not_found"):
        await people.email("nobody")


async def test_a_notice_is_posted_to_the_channel_and_failures_are_delivery_errors(
    fake_slack: FakeSlack,
) -> None:
    notifier = SlackNotifier(client(fake_slack), channel="C0FIDO")
    await notifier.notice("automatic action paused")
    [post] = fake_slack.calls("chat.postMessage")
    assert (post["channel"], post["text"]) == ("C0FIDO", "automatic action paused")
    fake_slack.down("ratelimited", status=429, headers={"Retry-After": "3"})
    with pytest.raises(DeliveryError) as raised:
        await notifier.notice("again")
    assert raised.value.retry_after == 3
