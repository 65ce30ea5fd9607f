"""``fido doctor``: check everything Fido needs at once, and say how to fix each failure.

One line per check — ``ok``, ``failed`` or ``skipped`` — with what was found and, for a
failure, the fix. The checks: every required setting (``bot/doctor_settings.py``); the
database, reachable and migrated; Slack: the token (``auth.test``), the scopes granted
against those ``manifest.yml`` asks for, the bot's membership of every channel it posts to
(``bot/doctor_slack.py``); the directory (bind, base DN, one sample search), each enricher
with the cheapest harmless call its vendor documents, and each source and responder
endpoint (``bot/doctor_remote.py``). Nothing is written anywhere: the database is not
created or migrated, no message is posted, no lookup spends a quota.

``fido serve`` runs the cheap half at start-up (``startup``): the settings, before anything
is created; the database is then waited for and migrated as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bot.doctor_settings import SECTIONS, SettingsReport, check_settings
from bot.settings import Settings
from pipeline.errors import ConfigError
from pipeline.policy import Policy, load_policy

TIMEOUT = 10.0  # seconds for any one remote check


class Status(StrEnum):
    ok = "ok"
    failed = "failed"
    skipped = "skipped"


@dataclass
class Check:
    """One line of the report: ``detail`` says what was found (or why it was skipped),
    ``fix`` what to do about a failure."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.ok, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.failed, detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, Status.skipped, detail)


def settings_checks(report: SettingsReport) -> list[Check]:
    if report.ok:
        return [ok("settings", "every required setting is present")]
    checks = []
    missing = report.missing
    if missing:
        checks.append(
            failed(
                "settings",
                f"{len(missing)} missing: {', '.join(missing)}",
                "set them in the environment or in .env (fido init asks for them; "
                ".env.example describes each)",
            )
        )
    for problem in report.problems:
        if not problem.missing:
            checks.append(
                failed(f"settings: {problem.name}", problem.reason, "correct it in the policy")
            )
    return checks


def database_check(url: str) -> Check:
    """Reachable, and at the newest migration — without creating or migrating anything."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, make_url, pool

    from pipeline.db import MIGRATIONS, first_line, is_sqlite, sync_url

    name = "database"
    if is_sqlite(url):
        path = make_url(url).database or ""
        if path and path != ":memory:" and not Path(path).exists():
            return skipped(name, f"{path} does not exist yet: fido serve creates it")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # any driver's error: reported, not raised
        return failed(
            name,
            f"cannot connect: {first_line(exc)}",
            "check FIDO_DATABASE_URL and that the database server runs and accepts Fido",
        )
    finally:
        engine.dispose()
    if current != head:
        return failed(
            name,
            f"at migration {current or 'none'}, the newest is {head}",
            "run fido db upgrade (fido serve also migrates at start)",
        )
    return ok(name, f"reachable, at the newest migration ({head})")


async def diagnose(
    settings: Settings,
    *,
    policy: Policy | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
    http: Any = None,
) -> list[Check]:
    """Every check, in the order the report prints them (``http``: the client for the
    vendors' calls; one is made when None)."""
    from bot import doctor_remote, doctor_slack
    from bot.wiring import process_environ

    environ = process_environ() if environ is None else environ
    checks: list[Check] = []
    if policy is None:
        try:
            policy = load_policy(settings.config)
        except ConfigError as exc:
            fix = f"fido check-config {settings.config} lists every problem with its line"
            checks.append(failed("policy", str(exc).splitlines()[0], fix))
            policy = Policy(enrichers=[], actions=[])  # the checks that need no policy
    report = check_settings(settings, policy, serve=True, sections=SECTIONS, environ=environ)
    checks += settings_checks(report)
    checks.append(await asyncio.to_thread(database_check, settings.database_url))
    checks += await doctor_slack.checks(settings, policy, timeout=timeout)
    checks += await doctor_remote.checks(
        settings, policy, report=report, environ=environ, timeout=timeout, http=http
    )
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 only when every check that ran passed."""
    return 1 if any(c.status is Status.failed for c in checks) else 0


def render(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for check in checks:
        line = f"{check.status.value:<8} {check.name:<{width}}  {check.detail}"
        if check.fix:
            line += f" — fix: {check.fix}"
        lines.append(line)
    failures = sum(c.status is Status.failed for c in checks)
    done = sum(c.status is Status.ok for c in checks)
    lines.append(
        f"{done} ok, {failures} failed, {len(checks) - done - failures} skipped"
        + ("" if failures else ": Fido is ready (fido serve)")
    )
    return "\n".join(lines)


def render_json(checks: list[Check]) -> str:
    body: dict[str, Any] = {
        "ok": exit_code(checks) == 0,
        "checks": [asdict(c) | {"status": c.status.value} for c in checks],
    }
    return json.dumps(body, indent=2, ensure_ascii=False)
