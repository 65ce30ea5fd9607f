"""``manifest.yml`` keeps in step with the code: every Web API method the code calls has its
scope, every event it listens to is subscribed, the slash command is declared, and the
usage hint names exactly the subcommands ``/fido`` dispatches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bot.slack.listeners.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifest.yml"
CODE = [ROOT / "bot", ROOT / "integrations", ROOT / "pipeline"]

# The bot scopes each Web API method needs (api.slack.com/methods, "Required scopes").
# A method the code calls that is missing here fails the test: add it with its scopes.
METHOD_SCOPES: dict[str, set[str]] = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "chat.update": {"chat:write"},
    "chat.delete": {"chat:write"},
    "chat.getPermalink": set(),
    "conversations.info": {"channels:read", "groups:read"},
    "conversations.open": {"im:write"},
    "conversations.replies": {"channels:history"},
    "users.info": {"users:read"},
    "users.lookupByEmail": {"users:read.email"},
    "usergroups.users.list": {"usergroups:read"},
    "views.publish": set(),
    "views.open": set(),
    "views.update": set(),
    "reactions.add": {"reactions:write"},
    "apps.connections.open": set(),  # the app-level token's connections:write, not a bot scope
}
# The scopes each event needs to be delivered.
EVENT_SCOPES: dict[str, set[str]] = {
    "app_home_opened": set(),
    "message.im": {"im:history"},
    "app_mention": {"app_mentions:read"},
}
# Scopes that no method call shows, and why they are asked for.
WHY: dict[str, str] = {
    "commands": "the /fido slash command",
    "chat:write.public": "post cards to a public channel Fido was not invited to",
    "users:read.email": "users.info returns a profile's e-mail only with it (no self-approval)",
    "im:write": "open a direct message with the affected user",
}
SDK_CALL = re.compile(
    r"\.(auth|chat|conversations|users|usergroups|views|reactions|apps)_([A-Za-z_]+)\("
)
METHOD_NAME = re.compile(
    r"[\"'](auth|chat|conversations|users|usergroups|views|reactions|apps)\.([A-Za-z.]+)[\"']"
)
EVENT = re.compile(r"app\.event\(\s*[\"']([a-z_.]+)[\"']")
SLASH = re.compile(r"app\.command\(\s*[\"'](/[a-z-]+)[\"']")


def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def sources() -> dict[Path, str]:
    return {
        path: path.read_text(encoding="utf-8")
        for folder in CODE
        for path in folder.rglob("*.py")
        if "__pycache__" not in path.parts
    }


def methods_called() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path, text in sources().items():
        for family, rest in SDK_CALL.findall(text):
            found.setdefault(f"{family}.{rest.replace('_', '.')}", path)
        for family, rest in METHOD_NAME.findall(text):
            found.setdefault(f"{family}.{rest}", path)
    return found


def test_the_code_calls_the_methods_we_expect_to_find() -> None:
    """The scan itself works: it finds the calls we know are there."""
    found = methods_called()
    assert {"chat.postMessage", "chat.update", "views.publish", "users.info"} <= set(found)
    assert "usergroups.users.list" in found and "auth.test" in found


def test_every_method_the_code_calls_has_its_scope() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    for method, path in sorted(methods_called().items()):
        assert method in METHOD_SCOPES, f"{path.relative_to(ROOT)} calls {method}: add its scope"
        needed = METHOD_SCOPES[method]
        assert not needed or needed & scopes, f"{method} needs one of {needed} in manifest.yml"


def test_every_scope_is_used() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    used = set().union(*(METHOD_SCOPES[m] for m in methods_called() if m in METHOD_SCOPES))
    events = manifest()["settings"]["event_subscriptions"]["bot_events"]
    used |= set().union(*(EVENT_SCOPES.get(e, set()) for e in events))
    assert scopes - used - set(WHY) == set(), "a scope no code needs: remove it or say why"


def test_events_listened_to_are_subscribed_and_no_others() -> None:
    listened = {e for text in sources().values() for e in EVENT.findall(text)}
    assert "app_home_opened" in listened
    subscribed = set(manifest()["settings"]["event_subscriptions"]["bot_events"])
    assert subscribed == listened
    for event in subscribed:
        assert event in EVENT_SCOPES, f"say which scope {event} needs"
        scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
        assert EVENT_SCOPES[event] <= scopes


def test_the_slash_command_is_declared_with_every_subcommand_in_its_hint() -> None:
    features = manifest()["features"]
    declared = {c["command"]: c for c in features["slash_commands"]}
    listened = {c for text in sources().values() for c in SLASH.findall(text)}
    assert set(declared) == listened == {"/fido"}
    fido = declared["/fido"]
    hint = fido["usage_hint"]
    assert 1 <= len(hint) <= 1000 and 1 <= len(fido["description"]) <= 2000  # Slack's limits
    assert [part.split()[0] for part in hint.split(" | ")] == list(COMMANDS)
    assert features["app_home"]["home_tab_enabled"] is True
    assert manifest()["settings"]["interactivity"]["is_enabled"] is True


def test_the_readme_table_lists_every_subcommand() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| `/fido …` |") :].split("\n\n")[0]
    rows = re.findall(r"^\| `([a-z]+)[^`]*` \|", table, flags=re.MULTILINE)
    assert rows == list(COMMANDS)
