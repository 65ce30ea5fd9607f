"""The engineer's command-line tools behind ``fido parse`` and ``fido dead-letters``."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from bot.settings import Settings
from bot.wiring import Wiring
from pipeline import db as database
from pipeline import deadletters
from pipeline.backtest import BacktestReport
from pipeline.decide import Targets
from pipeline.errors import InputError
from pipeline.models import DeadLetter, Decision
from pipeline.plugins import ParsedEvent, parse_progress
from pipeline.policy import Policy, load_policy


def event_json(detector: str, event: ParsedEvent) -> dict[str, Any]:
    """An event exactly as the pipeline stores it."""
    return {
        "detector": detector,
        "external_id": event.external_id,
        "title": event.title,
        "severity": event.severity,
        "vendor_severity": event.vendor_severity,
        "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
        "observables": event.observables.model_dump(),
        "raw": event.raw,
    }


PROGRESS_FROM = 1_000  # records: a smaller delivery parses too fast for a progress bar


def parse(
    settings: Settings,
    detector: str,
    body: bytes,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Parse ``body`` as ``detector`` would, with the policy's options; raises ParseError.
    ``progress`` is fed (records read, records in all) while a large delivery is read."""
    wiring = Wiring(settings, load_policy(settings.config))
    parser = wiring.detector(detector)

    def report(done: int, total: int) -> None:
        if progress is not None and total >= PROGRESS_FROM:
            progress(done, total)

    with parse_progress(report):
        events = parser.parse(body)
    return json.dumps([event_json(detector, e) for e in events], indent=2, ensure_ascii=False)


async def lookup(settings: Settings, kind: str, value: str, *, as_json: bool) -> str:
    """What every enricher and Fido's history say about one value (raises InputError)."""
    from bot.slack.lookup_blocks import lookup_blocks
    from pipeline.investigate import investigate, validate

    validate(kind, value)
    policy = load_policy(settings.config)
    wiring = Wiring(settings, policy)
    db = database.Database(settings.database_url)  # connects on first use, not here
    try:
        built = wiring.enrichers(db)  # a ConfigError before any file or database is made
        await _upgrade(settings, create=True)  # its lookup cache lives there
        report = await investigate(db=db, policy=policy, enrichers=built, kind=kind, value=value)
    finally:
        await db.dispose()
    skipped = not_asked(report)
    if as_json:
        results = {n: r.model_dump(mode="json") for n, r in report.results.items()}
        for name, reason in skipped.items():
            results[name] = {"status": "skipped", "facts": {}, "error": None, "reason": reason}
        return json.dumps(
            {
                "kind": report.kind,
                "value": report.value,
                "results": results,
                "history": report.history,
            },
            indent=2,
            default=str,
            ensure_ascii=False,
        )
    for name in skipped:
        del report.results[name]
    lines = terminal_text(lookup_blocks(report)).splitlines()
    if skipped and not report.results:  # "no enrichers enabled" would not be true
        lines = [line for line in lines if line.strip() != "no enrichers enabled"]
    notes = [f"{name}: skipped, {reason}" for name, reason in skipped.items()]
    return "\n".join([*lines[:2], *notes, *lines[2:]])


def not_asked(report: Any) -> dict[str, str]:
    """The enrichers that answered nothing about the value because they do not look up
    its kind (the directory and an IP address): reported as skipped, never as "ok"."""
    from pipeline.observables import Observables

    key = Observables.key(report.kind, report.value)
    return {
        name: f"it does not look up {report.kind} values"
        for name, result in report.results.items()
        if result.ok and key not in result.facts
    }


_EMPHASIS = re.compile(r"(?<![\w*_~`])([*_~])(?=\S)(.+?)(?<=\S)\1(?![\w*_~`])")
_CODE = re.compile(r"`([^`\n]+)`")
_EMOJI = {":warning:": "!", ":rotating_light:": "!!", ":double_vertical_bar:": "||"}


def terminal_text(blocks: Any) -> str:
    """Blocks as a terminal shows them: Slack's text read back (``render_text``), without
    mrkdwn's markers (``*bold*``, ``_italic_``, backticks) or emoji codes."""
    from bot.slack.text import render_text

    text = _CODE.sub(r"\1", render_text(blocks))
    previous = None
    while previous != text:  # nested: *User* _(x)_
        previous, text = text, _EMPHASIS.sub(r"\2", text)
    for code, shown in _EMOJI.items():
        text = text.replace(code, shown)
    return text


async def incident(settings: Settings, incident_id: int, *, as_json: bool) -> str:
    """Incident ``incident_id`` with every point of its score, its decision, how it was
    closed, its events and actions (raises InputError when there is no such incident)."""
    from bot.slack.blocks import incident_card
    from bot.slack.detail_blocks import timeline_blocks
    from bot.slack.text import render_text
    from pipeline import reads
    from pipeline.errors import InputError
    from pipeline.incidents import IncidentService
    from pipeline.suppress import from_incident

    await _upgrade(settings)
    policy = load_policy(settings.config)
    db = database.Database(settings.database_url)
    try:
        service = IncidentService(db=db, policy=policy)
        found = await service.get(incident_id)
        if found is None:
            raise InputError(f"there is no incident {incident_id}")
        record, actions = found
        events = await service.events_of(incident_id)
        in_force = await service.suppressions()
        moments = await reads.timeline(db, incident_id)
    finally:
        await db.dispose()
    if as_json:
        whole = incident_json(record, actions, events)
        whole["timeline"] = [
            {"at": _iso(m.at), "kind": m.moment.value, "actor": m.actor, "what": m.what}
            for m in moments
        ]
        return json.dumps(whole, indent=2, ensure_ascii=False, default=str)
    # the buttons' labels, from the responders as fido serve builds them (options may set them)
    wiring = Wiring(settings, policy)
    labels = wiring.labels(wiring.responders())
    like = from_incident(record)
    blocks = incident_card(
        record,
        actions,
        labels=labels,
        full=True,
        events=events,
        suppression_days=policy.suppression_days,
        suppression=next((s.key for s in in_force if s.match == like), None),
    )
    return render_text([*blocks, *timeline_blocks(moments)])


def _iso(when: Any) -> str | None:
    from pipeline.clock import as_utc

    return as_utc(when).isoformat() if when is not None else None


def incident_json(record: Any, actions: list[Any], events: list[Any]) -> dict[str, Any]:
    """An incident, its whole score breakdown (with components), its events and actions."""
    from pipeline.records import breakdown_of, enrichment_of, proposals_of

    return {
        "id": record.id,
        "title": record.title,
        "severity": record.severity,
        "status": record.status,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "score": record.score,
        "breakdown": [
            line.model_dump(mode="json") for line in breakdown_of(record.score_breakdown)
        ],
        "decision": record.decision,
        "decision_reason": record.decision_reason,
        "degraded": record.degraded,
        "proposals": [p.model_dump(mode="json") for p in proposals_of(record.proposed_actions)],
        "verdict": record.verdict,
        "closed_at": _iso(record.closed_at),
        "closed_by": record.closed_by,
        "close_reason": record.close_reason,
        "previous_id": record.previous_id,
        "suppressed_by": record.suppressed_by,
        "detectors": record.detectors,
        "event_count": record.event_count,
        "observables": record.observables,
        "enrichment": {
            name: result.model_dump(mode="json")
            for name, result in enrichment_of(record.enrichment).items()
        },
        "message": {"channel": record.message_channel, "ts": record.message_ts},
        "events": [
            {
                "id": e.id,
                "detector": e.detector,
                "external_id": e.external_id,
                "title": e.title,
                "severity": e.severity,
                "occurred_at": _iso(e.occurred_at),
                "received_at": _iso(e.received_at),
                "suppressed_by": e.suppressed_by,
            }
            for e in events
        ],
        "actions": [
            {
                "id": a.id,
                "responder": a.responder,
                "target": a.target,
                "status": a.status,
                "requested_by": a.requested_by,
                "approved_by": a.approved_by,
                "undone_by": a.undone_by,
                "result": a.result,
                "created_at": _iso(a.created_at),
                "updated_at": _iso(a.updated_at),
            }
            for a in actions
        ],
    }


def describe(letter: DeadLetter) -> str:
    when = letter.received_at.strftime("%Y-%m-%d %H:%M:%S")
    error = letter.error.replace("\n", " ")
    return (
        f"{letter.id:>6}  {when}  {letter.detector:<16} {letter.source:<16} "
        f"{len(letter.body):>8} B  {letter.status:<9} {error}"
    )


async def list_dead_letters(settings: Settings, *, all_: bool) -> list[str]:
    await _upgrade(settings)
    db = database.Database(settings.database_url)
    try:
        letters = await deadletters.listing(db, status=None if all_ else "pending")
    finally:
        await db.dispose()
    return [describe(letter) for letter in letters]


async def retry_dead_letters(
    settings: Settings, ids: list[int] | None, *, progress: TextIO | None = None
) -> list[str]:
    """Parse dead letters again; a progress bar goes to ``progress`` when it is a terminal."""
    await _upgrade(settings)
    policy = load_policy(settings.config)
    wiring = Wiring(settings, policy)
    names = set(policy.detectors) | {s.detector for s in policy.sources.values()}
    parsers = {name: wiring.detector(name) for name in names}
    db = database.Database(settings.database_url)
    try:
        with Progress("retrying dead letters", progress) as bar:
            outcomes = await deadletters.retry(db, detectors=parsers, ids=ids, progress=bar)
    finally:
        await db.dispose()
    return [f"{o.id:>6}  {'parsed' if o.ok else 'failed'}: {o.message}" for o in outcomes]


async def _upgrade(settings: Settings, *, create: bool = False) -> None:
    """Migrate the database; unless ``create``, refuse to make a new SQLite file (a command
    that reads what ``fido serve`` stored, run in the wrong directory, would otherwise
    answer from an empty database it has just left there)."""
    import asyncio

    from sqlalchemy import make_url

    from pipeline.errors import ConfigError

    url = settings.database_url
    if not create and database.is_sqlite(url):
        path = make_url(url).database or ""
        if path and path != ":memory:" and not Path(path).exists():
            raise ConfigError(
                f"no database at {path}: fido serve (or fido db upgrade) creates it; "
                "set FIDO_DATABASE_URL if it is elsewhere"
            )
    with Progress("migrating the database", sys.stderr) as bar:
        await asyncio.to_thread(database.upgrade, url, progress=bar)


# -- fido backtest ---------------------------------------------------------------------

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``2w`` as a timedelta; InputError otherwise."""
    import re

    found = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text.casefold())
    if not found or int(found[1]) == 0:
        raise InputError(
            f"{text!r} is not a duration: give a positive number and a unit, "
            "m, h, d or w (e.g. 90m, 12h, 30d, 2w)"
        )
    return timedelta(**{_UNITS[found[2]]: int(found[1])})


def responder_targets(settings: Settings, policy: Policy) -> dict[str, Targets]:
    """What ``decide`` needs of each responder the policy names: its target kind, read from
    the responder as ``fido serve`` builds it (the rule's options may set it: a webhook or
    ``log_only`` acting on hosts). Nothing is connected, but every setting and secret the
    responders need must be there, as for ``fido serve`` (ConfigError naming it)."""
    return dict(Wiring(settings, policy).responders())


async def backtest(
    settings: Settings,
    policy_path: str,
    *,
    since: timedelta | None,
    as_json: bool,
    progress: TextIO | None = None,
) -> str:
    """Re-score the stored incidents under the policy at ``policy_path`` (raises
    ``PolicyFileError``); a progress bar goes to ``progress`` when it is a terminal."""
    import typer

    from pipeline import backtest as replay

    policy = load_policy(policy_path)
    targets = responder_targets(settings, policy)
    start = datetime.now(UTC) - since if since is not None else None
    await _upgrade(settings)
    db = database.Database(settings.database_url)
    try:
        if progress is not None and progress.isatty():
            total = await replay.count(db=db, since=start)
            with typer.progressbar(length=total, label="backtest", file=progress) as bar:
                report = await replay.backtest(
                    db=db, policy=policy, responders=targets, since=start, progress=bar.update
                )
        else:
            report = await replay.backtest(db=db, policy=policy, responders=targets, since=start)
    finally:
        await db.dispose()
    if as_json:
        body = {"policy": policy_path, "since": start.isoformat() if start else None}
        return json.dumps(body | report.model_dump(mode="json"), ensure_ascii=False)
    return backtest_text(report, policy_path=policy_path, since=start)


SHOWN_CHANGES = 20


def backtest_text(report: BacktestReport, *, policy_path: str, since: datetime | None) -> str:
    """The summary, the decision transition matrix and the first changed incidents."""
    from pipeline.backtest import NO_DECISION, band

    window = f"created since {since:%Y-%m-%d %H:%M} UTC" if since else "stored"
    lines = [
        f"{policy_path}: {report.incidents} incidents {window}",
        f"  score band changes       {report.band_changes:>8}",
        f"  decision changes         {report.decision_changes:>8}",
        f"  newly auto-actioned      {report.newly_auto:>8}",
        f"  no longer auto-actioned  {report.no_longer_auto:>8}",
    ]
    if report.transitions:
        names = [d.value for d in Decision]
        rows = [n for n in [NO_DECISION, *names] if n in report.transitions]
        width = max(len(n) for n in names) + 2
        lines += ["", "decisions, stored (rows) → new (columns)"]
        lines.append(" " * (width + 2) + "".join(f"{n:>{width}}" for n in names))
        for old in rows:
            counts = report.transitions[old]
            cells = "".join(f"{counts.get(n, 0):>{width}}" for n in names)
            lines.append(f"  {old:<{width}}{cells}")
    if report.changed:
        shown = report.changed[:SHOWN_CHANGES]
        lines += ["", f"changed incidents (the first {len(shown)} of {len(report.changed)})"]
        for change in shown:
            (old_score, new_score), (was, now) = change.score, change.decision
            bands = f"{band(old_score).value} → {band(new_score).value}"
            decisions = f"{was.value if was else NO_DECISION} → {now.value}"
            lines.append(
                f"  #{change.incident:<8} score {old_score:>3} → {new_score:<3} "
                f"{bands:<20} {decisions}"
            )
    return "\n".join(lines)


class Progress:
    """A progress bar on ``file`` when it is a terminal, fed ``(done, total)``; nothing
    otherwise (a pipe or a log gets only the result)."""

    def __init__(self, label: str, file: TextIO | None) -> None:
        self.label = label
        self.file = file if file is not None and file.isatty() else None
        self._bar: Any = None
        self._shown = 0

    def __enter__(self) -> Progress:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.file is None:
            return
        if self._bar is None:
            import typer

            self._bar = typer.progressbar(length=total, label=self.label, file=self.file)
            self._bar.__enter__()
        self._bar.update(done - self._shown)
        self._shown = done

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
