"""Look-alike accounts: a protected account spelt with invisible, full-width, Cyrillic or
dotted characters is still protected; a target holding such characters is never proposed
and never acted on; approvers are Slack ids, compared exactly after NFKC."""

from __future__ import annotations

import pytest
from sqlmodel import select

from pipeline import act
from pipeline.db import Database
from pipeline.decide import propose
from pipeline.errors import NotAuthorized, ResponderError
from pipeline.models import AuditEntry, Incident
from pipeline.observables import account_name, unsafe_characters
from pipeline.policy import ActionPolicy, Policy
from pipeline.records import Proposal, dump_proposals
from tests.pipeline.fakes import LockResponder

LOOK_ALIKES = [
    "Administrator\u200b",  # zero-width space
    "Admin\u00adistrator",  # soft hyphen
    "\u202eAdministrator",  # right-to-left override
    "Ａｄｍｉｎｉｓｔｒａｔｏｒ",  # full-width
    "\U0001d400dministrator",  # mathematical bold A
    "\u0430dministrator",  # Cyrillic a
    "Administr\u0430t\u043er",  # Cyrillic a and o
    "ADMİNİSTRATOR",  # Turkish dotted capital I: casefolds to i + U+0307
    "CORP\\Administrator\u2060",  # word joiner
    "administrator\ufe0f@corp.example",  # variation selector
    "KRBTGT\u200d",  # zero-width joiner
]


@pytest.mark.parametrize("spelling", LOOK_ALIKES)
def test_a_protected_account_is_protected_however_it_is_spelt(spelling: str) -> None:
    assert Policy().is_protected(spelling)


@pytest.mark.parametrize("name", ["alice", "Δημήτρης", "müller", "İlker", "山田たろう", "josé"])
def test_ordinary_names_in_any_one_script_are_not_protected_nor_unsafe(name: str) -> None:
    assert not Policy().is_protected(name)
    assert unsafe_characters(name) is None


def test_protected_entries_are_normalised_too() -> None:
    policy = Policy(protected_accounts=["ＳＶＣ_backup", "CORP\\break-glass"])
    assert policy.is_protected("svc_backup@corp.example")
    assert policy.is_protected("break-glass")


def test_account_names_are_nfkc_normalised_and_case_folded() -> None:
    assert account_name("ＣＯＲＰ＼Ａｌｉｃｅ") == "alice"
    assert account_name("Alice＠corp.example") == "alice"
    assert account_name("STRASSE") == account_name("straße")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("alice\u200b", "invisible"),
        ("al\u202eice", "invisible"),
        ("bob\u0000", "invisible"),
        ("\u3164bob", "invisible"),  # Hangul filler: a letter that shows nothing
        ("ａｌｉｃｅ", "look-alike"),
        ("\u0430lice", "mixes"),
        ("pаypal", "mixes"),
        ("a\u0336lice", "combining mark"),  # a strike-through drawn over the "a"
    ],
)
def test_unsafe_characters_are_named(target: str, reason: str) -> None:
    found = unsafe_characters(target)
    assert found is not None and reason in found


def incident(users: list[str]) -> Incident:
    return Incident(
        id=1,
        title="t",
        severity="critical",
        observables={"users": users},
        enrichment={
            "dir": {
                "status": "ok",
                "facts": {f"user:{u}": {"found": True} for u in users},
                "error": None,
            }
        },
    )


POLICY = Policy(actions=[ActionPolicy(responder="test_lock")])


@pytest.mark.parametrize("target", ["alice\u200b", "\u0430lice", "ａｌｉｃｅ", "ADMİNİSTRATOR"])
def test_look_alike_targets_are_never_proposed(target: str) -> None:
    proposed, skipped = propose(incident([target]), POLICY, {"test_lock": LockResponder()})
    assert proposed == []
    [why] = skipped
    assert repr(target)[1:-1] in why or target in why


def test_an_ordinary_target_is_still_proposed() -> None:
    proposed, skipped = propose(incident(["alice"]), POLICY, {"test_lock": LockResponder()})
    assert proposed == [Proposal(responder="test_lock", target="alice")] and skipped == []


@pytest.mark.parametrize("target", ["alice\u200b", "\u0430lice", "Administrator\u200b"])
async def test_a_look_alike_target_is_never_acted_on(db: Database, target: str) -> None:
    """Even a proposal stored before this check (or written by hand) is refused."""
    async with db.session() as session:
        row = Incident(
            title="t",
            proposed_actions=dump_proposals([Proposal(responder="test_lock", target=target)]),
        )
        session.add(row)
        await session.commit()
        assert row.id is not None
    responder = LockResponder()
    with pytest.raises(ResponderError):
        await act.execute(
            db=db,
            policy=POLICY,
            responders={"test_lock": responder},
            incident_id=row.id,
            responder="test_lock",
            target=target,
            requested_by="UANALYST",
            approved_by="UANALYST",
        )
    assert responder.executions == []
    assert await act.actions_for(db, incident_id=row.id) == []


@pytest.mark.parametrize(
    ("actor", "approvers", "allowed"),
    [
        ("UANALYST", ["UANALYST"], True),
        ("UANALYST", ["ＵＡＮＡＬＹＳＴ"], True),  # a full-width id in the settings
        ("uanalyst", ["UANALYST"], False),  # Slack ids are case-sensitive
        ("UANALYST\u200b", ["UANALYST"], False),
        ("U\u0410NALYST", ["UANALYST"], False),  # Cyrillic A
    ],
)
async def test_approvers_are_compared_exactly_after_nfkc(
    db: Database, actor: str, approvers: list[str], allowed: bool
) -> None:
    if allowed:
        await act.authorize(db, actor=actor, approvers=approvers, verb="approve", incident_id=None)
        return
    with pytest.raises(NotAuthorized):
        await act.authorize(db, actor=actor, approvers=approvers, verb="approve", incident_id=None)
    async with db.session() as session:
        [entry] = (await session.exec(select(AuditEntry))).all()
    assert entry.verb == "refused"
