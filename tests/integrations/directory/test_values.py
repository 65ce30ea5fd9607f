"""The pure rules behind the directory facts, without a server: times, lockout, SIDs,
DNs, search candidates and privileged groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from integrations.directory.records import Group, computer_candidates, user_candidates
from integrations.directory.values import (
    container_path,
    dn_parts,
    dns_domain,
    filetime,
    filetime_iso,
    is_locked,
    normalise,
    rdn_value,
    sid_text,
    to_filetime,
)
from integrations.enrichers.active_directory import is_privileged, last_logon

NOW = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
MINUTE = 60 * 10**7  # FILETIME ticks
FOREVER = -0x8000000000000000


def test_filetime_converts_and_never_is_none() -> None:
    # 2009-02-13T23:31:30Z is Unix time 1234567890.
    ticks = (1234567890 + 11644473600) * 10**7
    assert filetime(ticks) == datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC)
    assert filetime_iso(ticks) == "2009-02-13T23:31:30Z"
    assert filetime_iso(ticks + 9_999_999) == "2009-02-13T23:31:30Z"  # to the second
    assert to_filetime(NOW) == to_filetime(filetime(to_filetime(NOW)) or NOW)
    for never in (None, 0, -1, 0x7FFFFFFFFFFFFFFF):
        assert filetime(never) is None and filetime_iso(never) is None


def test_last_logon_is_the_later_of_both_attributes() -> None:
    early, late = to_filetime(NOW - timedelta(days=10)), to_filetime(NOW)
    assert last_logon({"lastLogonTimestamp": early, "lastLogon": late}) == "2026-05-01T09:30:00Z"
    assert last_logon({"lastLogonTimestamp": late, "lastLogon": 0}) == "2026-05-01T09:30:00Z"
    assert last_logon({"lastLogon": 0}) is None and last_logon({}) is None


@pytest.mark.parametrize(
    ("computed", "locked_ago", "duration", "locked"),
    [
        (0x10, None, None, True),  # the DC says so
        (0x0, 5, -30 * MINUTE, False),  # the DC's answer wins over lockoutTime
        (None, None, -30 * MINUTE, False),  # never locked
        (None, 5, -30 * MINUTE, True),  # within the lockout duration
        (None, 31, -30 * MINUTE, False),  # the lock has expired
        (None, 60 * 24 * 365, 0, True),  # 0: until an administrator unlocks it
        (None, 60 * 24 * 365, FOREVER, True),  # "never" expires
        (None, 60 * 24 * 365, None, True),  # policy unknown: do not claim it expired
    ],
)
def test_is_locked(
    computed: int | None, locked_ago: int | None, duration: int | None, locked: bool
) -> None:
    lockout_time = to_filetime(NOW - timedelta(minutes=locked_ago)) if locked_ago else 0
    assert (
        is_locked(computed=computed, lockout_time=lockout_time, lockout_duration=duration, now=NOW)
        is locked
    )


def test_sid_text() -> None:
    raw = bytes.fromhex("010500000000000515000000") + b"".join(
        n.to_bytes(4, "little") for n in (3529893511, 2898923152, 3697854799, 1104)
    )
    assert sid_text(raw) == "S-1-5-21-3529893511-2898923152-3697854799-1104"
    assert sid_text(bytes.fromhex("01020000000000052000000020020000")) == "S-1-5-32-544"
    with pytest.raises(ValueError):
        sid_text(raw[:-1])


def test_normalise_reads_sids_from_raw_bytes() -> None:
    raw_sid = bytes.fromhex("01020000000000052000000021020000")
    item = {
        "dn": "CN=x,DC=fido,DC=test",
        "attributes": {"objectSid": ["!"], "pwdLastSet": ["7"], "mail": [], "memberOf": []},
        "raw_attributes": {"objectSid": [raw_sid]},
    }
    assert normalise(item) == {
        "dn": "CN=x,DC=fido,DC=test",
        "objectSid": "S-1-5-32-545",
        "pwdLastSet": 7,
        "memberOf": [],
    }


def test_dn_parts_and_paths() -> None:
    dn = r"CN=Ops\, EU \28x\29,OU=Fin\+Ops,OU=Work stations,DC=fido,DC=test"
    assert dn_parts(dn)[:2] == [("CN", "Ops, EU (x)"), ("OU", "Fin+Ops")]
    assert rdn_value(dn) == "Ops, EU (x)"
    assert rdn_value(r"CN=Caf\C3\A9,DC=x") == "Café"
    assert container_path(dn) == "Work stations/Fin+Ops"
    assert container_path("CN=PC1,CN=Computers,DC=fido,DC=test") == "Computers"
    assert container_path("CN=PC1,DC=fido,DC=test") is None
    assert dns_domain("DC=fido,DC=test") == "fido.test"


def test_user_candidates() -> None:
    assert user_candidates(" FIDO\\alice ") == [("sAMAccountName", "alice")]
    assert user_candidates("alice@fido.test") == [
        ("userPrincipalName", "alice@fido.test"),
        ("mail", "alice@fido.test"),
    ]
    assert user_candidates("FIDO\\") == [] and user_candidates("  ") == []


def test_computer_candidates() -> None:
    assert computer_candidates("PC1", "fido.test") == [("sAMAccountName", "PC1$"), ("cn", "PC1")]
    assert computer_candidates("PC1$", "fido.test") == [("sAMAccountName", "PC1$")]
    assert computer_candidates("pc1.FIDO.test.", "fido.test") == [
        ("dNSHostName", "pc1.FIDO.test"),
        ("sAMAccountName", "pc1$"),
        ("cn", "pc1"),
    ]
    assert computer_candidates("pc1.eu.fido.test", "fido.test") == [
        ("dNSHostName", "pc1.eu.fido.test")
    ]
    for not_a_name in ("10.0.0.1", "2001:db8::1", "", "."):
        assert computer_candidates(not_a_name, "fido.test") == []


DOMAIN = "S-1-5-21-1-2-3"


@pytest.mark.parametrize(
    ("group", "privileged"),
    [
        (Group("CN=x", "Domänen-Admins", f"{DOMAIN}-512"), True),  # renamed: the SID tells
        (Group("CN=x", "Organisations-Admins", "S-1-5-21-9-9-9-519"), True),  # forest root
        (Group("CN=x", "Administratoren", "S-1-5-32-544"), True),
        (Group("CN=x", "Druck-Operatoren", "S-1-5-32-550"), True),
        (Group("CN=x", "Domain Admins", f"{DOMAIN}-1105"), True),  # a look-alike: err safe
        (Group("CN=x", "Tier0", f"{DOMAIN}-1106", account="schema admins"), True),
        (Group("CN=x", "Domain Users", f"{DOMAIN}-513"), False),
        (Group("CN=x", "Users", "S-1-5-32-545"), False),
        (Group("CN=x", "VPN Users", f"{DOMAIN}-1512"), False),
        (Group("CN=x", "Helpdesk", None), False),
    ],
)
def test_is_privileged(group: Group, privileged: bool) -> None:
    assert is_privileged(group) is privileged
