"""Hostile input at the door: what an attacker (or a broken detector) can put in a
delivery never reaches the database in a form it cannot store or read back.

Every test runs on SQLite and, with FIDO_TEST_DATABASE_URL set, on PostgreSQL, where
text cannot hold NUL and timestamps past year 9999 cannot be read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import col, select

from integrations.detectors.common import timestamp
from integrations.detectors.generic import GenericDetector
from integrations.detectors.okta import OktaDetector
from pipeline.clock import as_utc
from pipeline.db import Database
from pipeline.errors import ParseError
from pipeline.ingest import ingest, store
from pipeline.models import Event
from pipeline.observables import Observables
from pipeline.plugins import ParsedEvent


class Prepared:
    """A detector that hands over the events it was given: what any parser could make."""

    name = "prepared"

    def __init__(self, *events: ParsedEvent) -> None:
        self.events = list(events)

    def parse(self, body: bytes) -> list[ParsedEvent]:
        return self.events


async def events(db: Database) -> list[Event]:
    async with db.session() as session:
        return list((await session.exec(select(Event).order_by(col(Event.id)))).all())


async def take(db: Database, body: dict | list, detector: object | None = None) -> list[Event]:
    async with db.session() as session:
        await ingest(
            session=session,
            detector=detector or GenericDetector(),  # type: ignore[arg-type]
            body=json.dumps(body).encode(),
        )
    return await events(db)


# ---- ids are digested, never cut ---------------------------------------------------------

LONG = "a" * 300


async def test_long_ids_sharing_their_first_255_characters_stay_distinct(db: Database) -> None:
    await take(db, {"id": LONG + "-1", "title": "first"})
    stored = await take(db, {"id": LONG + "-2", "title": "second"})
    assert [e.title for e in stored] == ["first", "second"]
    assert len({e.external_id for e in stored}) == 2
    assert all(len(e.external_id) <= 255 for e in stored)


async def test_a_long_id_redelivered_is_still_a_duplicate(db: Database) -> None:
    await take(db, {"id": LONG, "title": "once"})
    stored = await take(db, [{"id": LONG, "title": "once"}, {"id": LONG + "!", "title": "x"}])
    assert [e.title for e in stored] == ["once", "x"]


def test_the_generic_detector_digests_a_long_id_as_ingest_would() -> None:
    [first] = GenericDetector().parse(json.dumps({"id": LONG + "-1", "title": "t"}).encode())
    [second] = GenericDetector().parse(json.dumps({"id": LONG + "-2", "title": "t"}).encode())
    assert first.external_id.startswith("sha256:") and len(first.external_id) <= 255
    assert first.external_id != second.external_id


# ---- NUL and other control characters ----------------------------------------------------


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        ({"id": "a\u0000b", "title": "x"}, "'id'"),
        ({"id": "a\u001bb", "title": "x"}, "'id'"),
        ({"title": "x", "user": "al\u0000ice"}, "'user'"),
        ({"title": "x", "host": ["pc-1", "pc\u0000-2"]}, "'host'"),
        ({"title": "x", "url": "http://x.example/\u0085/a"}, "'url'"),
        ({"title": "x", "domain": "evil\u007f.example"}, "'domain'"),
    ],
)
async def test_control_characters_in_ids_and_observables_are_refused(
    db: Database, alert: dict, field: str
) -> None:
    with pytest.raises(ParseError, match=field) as refused:
        await take(db, alert)
    assert "control character" in str(refused.value)
    assert "\x00" not in str(refused.value)  # the reason itself can be stored and logged
    assert await events(db) == []


async def test_control_characters_in_a_title_are_cleaned_and_the_alert_kept(
    db: Database,
) -> None:
    [event] = await take(db, {"id": "t-1", "title": "bad\u0000 thing\u001b[31m\n\tline two"})
    assert event.title == "bad\ufffd thing\ufffd[31m\n\tline two"
    assert json.loads(event.raw)["title"] == "bad\u0000 thing\u001b[31m\n\tline two"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (ParsedEvent(external_id="x\x00", title="t", severity="low", raw="{}"), "external id"),
        (
            ParsedEvent(
                external_id="x",
                title="t",
                severity="low",
                raw="{}",
                observables=Observables(users=["bob\x00"]),
            ),
            "users",
        ),
        (
            ParsedEvent(
                external_id="x",
                title="t",
                severity="low",
                raw="{}",
                observables=Observables(processes=["a\x07.exe"]),
            ),
            "processes",
        ),
        (ParsedEvent(external_id="x", title="t", severity="low", raw="line\x00"), "raw payload"),
    ],
)
async def test_every_detector_is_held_to_the_same_rule(
    db: Database, event: ParsedEvent, field: str
) -> None:
    with pytest.raises(ParseError, match=field):
        await take(db, {}, Prepared(event))
    assert await events(db) == []


async def test_a_clean_title_and_vendor_severity_from_any_detector(db: Database) -> None:
    event = ParsedEvent(
        external_id="x", title="a\x00b", severity="low", raw="{}", vendor_severity="Hi\x00gh"
    )
    [stored] = await take(db, {}, Prepared(event))
    assert (stored.title, stored.vendor_severity) == ("a\ufffdb", "Hi\ufffdgh")


# ---- times outside 1970-2100 -------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59-23:59",  # year 10000 in UTC: PostgreSQL stores it, Python cannot
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+23:59",
        "1969-12-31T23:59:59Z",
        "2101-01-01T00:00:00Z",
    ],
)
async def test_a_time_outside_1970_to_2100_is_refused_naming_the_field(
    db: Database, moment: str
) -> None:
    with pytest.raises(ParseError, match="'occurred_at'.*1970.*2100"):
        await take(db, {"title": "x", "occurred_at": moment})
    assert await events(db) == []


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2100-12-31T23:59:59+00:00", datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
async def test_the_edges_of_the_range_are_stored_and_read_back(
    db: Database, moment: str, expected: datetime
) -> None:
    [event] = await take(db, {"title": "x", "occurred_at": moment})
    assert event.occurred_at is not None and as_utc(event.occurred_at) == expected


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-23:59", "1969-07-20T20:17:40Z", -1, 99_999_999_999]
)
def test_the_shared_time_normalisation_refuses_out_of_range_times(value: object) -> None:
    with pytest.raises(ParseError, match="1970.*2100"):
        timestamp(value)
    with pytest.raises(ParseError, match="'published'"):
        timestamp(value, field="published")


async def test_other_detectors_benefit_from_the_shared_rule(db: Database) -> None:
    okta = {"uuid": "u-1", "eventType": "user.session.start", "published": "9999-12-31T23:59Z"}
    with pytest.raises(ParseError, match="1970.*2100"):
        await take(db, okta, OktaDetector())
    assert await events(db) == []


async def test_ingest_refuses_an_out_of_range_time_from_any_detector(db: Database) -> None:
    event = ParsedEvent(
        external_id="x",
        title="t",
        severity="low",
        raw="{}",
        occurred_at=datetime(1900, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(ParseError, match="'occurred_at'"):
        await take(db, {}, Prepared(event))


# ---- many alerts in one batch ------------------------------------------------------------


async def test_more_alerts_than_postgresql_takes_parameters_are_stored_in_chunks(
    db: Database,
) -> None:
    many = [
        ParsedEvent(external_id=f"m-{n}", title="t", severity="low", raw="{}")
        for n in range(66_000)
    ]
    async with db.session() as session:
        result = await store(session=session, detector="prepared", parsed=many)
    assert len(result.created) == 66_000 and result.duplicates == []
    async with db.session() as session:
        again = await store(session=session, detector="prepared", parsed=many[-2:])
    assert again.created == [] and again.duplicates == ["m-65998", "m-65999"]


async def test_a_parser_error_quoting_a_nul_is_kept_as_a_dead_letter(db: Database) -> None:
    """Polled sources keep unparsable payloads through deadletters.keep too: the error text
    may quote the NUL that broke the parser; PostgreSQL text cannot hold it."""
    from pipeline import deadletters

    async with db.session() as session:
        letter = deadletters.keep(
            session, detector="generic", body=b'{"id": "a\\u0000"}\x00', error="bad id 'a\x00'"
        )
        await session.commit()
    kept = await deadletters.listing(db)
    assert [(d.id, d.error, d.body) for d in kept] == [
        (letter.id, "bad id 'a\ufffd'", b'{"id": "a\\u0000"}\x00')
    ]
