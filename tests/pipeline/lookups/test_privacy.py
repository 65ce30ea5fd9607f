"""Nothing internal reaches an external provider; allowlisted values are never looked up."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.detectors.generic import GenericDetector
from pipeline.db import Database
from pipeline.engine import Engine
from pipeline.errors import ConfigError
from pipeline.ingest import ingest
from pipeline.lookups.privacy import Screen
from pipeline.policy import Allowlist, PrivacyPolicy, load_policy
from tests.pipeline.lookups.fakes import Clock, InventoryLookup, ReputationLookup, Sleeps
from tests.pipeline.lookups.helpers import SHA_A, SHA_B, obs, policy, wrap

PRIVACY = {
    "internal_domains": ["corp.example", "*.Lab.Example."],
    "internal_networks": ["198.51.100.0/24", "5.6.0.0/16"],
}
INTERNAL = {
    "ips": [
        "10.0.0.5",
        "172.16.4.4",
        "192.168.1.20",
        "127.0.0.1",
        "169.254.10.1",
        "100.64.3.3",  # carrier-grade NAT
        "240.0.0.1",  # reserved
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd12:3456::1",
        "::ffff:10.1.2.3",
        "198.51.100.7",  # documentation range, and internal_networks
        "5.6.7.8",  # public, but in internal_networks
    ],
    "hosts": [
        "pc-042",
        "FILESRV",
        "db1.corp.example",
        "build.lab.example",
        "nas.local",
        "printer.lan",
    ],
    "domains": ["corp.example", "mail.corp.example", "LAB.EXAMPLE", "intranet.internal", "wpad"],
    "urls": [
        "https://wiki.corp.example/page",
        "http://intranet/login",
        "http://10.2.3.4:8080/admin",
        "http://[fd00::1]/x",
        "https://evil-site.com/phish?user=alice%40corp.example",  # an internal e-mail inside
        "https://evil-site.com/r?to=http://192.168.0.10/",  # an internal address inside
        "mailto:ceo@corp.example",
        "sso.corp.example/saml",
    ],
    "users": ["alice", "CORP\\bob", "carol@corp.example", "svc-backup"],
}
PUBLIC = {
    "ips": ["8.8.8.8", "2001:4860:4860::8888", "185.220.101.4"],
    "hosts": ["c2.evil-site.com"],
    "domains": ["evil-site.com", "corp.example.net", "notcorp.example"],  # look-alikes are public
    "urls": ["https://evil-site.com/payload.exe", "http://203.0.114.9/a"],
    "hashes": [SHA_A, SHA_B],
}


def everything() -> dict[str, list[str]]:
    return {k: INTERNAL.get(k, []) + PUBLIC.get(k, []) for k in set(INTERNAL) | set(PUBLIC)}


def public_values() -> set[str]:
    return {v for values in PUBLIC.values() for v in values}


def internal_values() -> set[str]:
    return {v for values in INTERNAL.values() for v in values}


async def test_no_internal_value_reaches_an_external_lookup(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup()  # every kind, including users and hosts
    enricher = wrap(vendor, db, clock, sleeps, policy(privacy=PRIVACY))
    facts = await enricher.enrich(obs(**everything()))
    sent = set(vendor.values())
    assert sent == public_values()  # the public ones did go: the screen is not just "off"
    assert not sent & internal_values()
    for kind, values in INTERNAL.items():
        for value in values:
            key = f"{kind.rstrip('s') if kind != 'hashes' else 'hash'}:{value}"
            assert facts[key] == {"withheld": "internal"}, key


async def test_the_whole_pipeline_keeps_internal_values_in(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = ReputationLookup()
    rules = policy(privacy=PRIVACY, enrichers=[])
    pipeline = Engine(db=db, policy=rules, enrichers=[wrap(vendor, db, clock, sleeps, rules)])
    alert = {
        "id": "1",
        "title": "Beacon",
        "user": INTERNAL["users"],
        "host": INTERNAL["hosts"] + PUBLIC["hosts"],
        "src_ip": INTERNAL["ips"],
        "dst_ip": PUBLIC["ips"],
        "hash": PUBLIC["hashes"],
        "domain": INTERNAL["domains"] + PUBLIC["domains"],
        "url": INTERNAL["urls"] + PUBLIC["urls"],
    }
    async with db.session() as session:
        await ingest(session=session, detector=GenericDetector(), body=json.dumps(alert).encode())
    assert await pipeline.drain() == 1
    assert set(vendor.values()) == public_values()


async def test_an_internal_lookup_sees_internal_values(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    vendor = InventoryLookup({"pc-042": {"owner": "alice"}})
    enricher = wrap(vendor, db, clock, sleeps, policy(privacy=PRIVACY))
    facts = await enricher.enrich(obs(hosts=["pc-042"], users=["alice"], ips=["10.0.0.5"]))
    assert facts["host:pc-042"] == {"owner": "alice"}
    assert set(vendor.values()) == {"pc-042", "alice", "10.0.0.5"}


async def test_allowlisted_values_are_not_looked_up(
    db: Database, clock: Clock, sleeps: Sleeps
) -> None:
    allow = {
        "ips": ["8.8.8.0/24", "2001:4860::/32"],
        "domains": ["good.example.org"],
        "hashes": [SHA_A.upper()],
        "urls": ["https://updates.vendor.com/", "https://exact.vendor.com/x"],
        "hosts": ["jump1"],
        "users": ["svc-scanner"],
    }
    listed = {
        "ips": ["8.8.8.8", "2001:4860:4860::8888"],
        "domains": ["good.example.org", "cdn.good.example.org"],
        "hashes": [SHA_A],
        "urls": ["https://updates.vendor.com/v2/pkg", "https://exact.vendor.com/x"],
    }
    unlisted = {
        "ips": ["8.8.4.4"],
        "domains": ["notgood.example.org", "good.example.org.evil.com"],
        "hashes": [SHA_B],
        "urls": ["https://updates.vendor.com.evil.com/", "https://exact.vendor.com/xy"],
    }
    internal = InventoryLookup()
    external = ReputationLookup()
    rules = policy(allowlist=allow)
    merged = {k: listed[k] + unlisted[k] for k in listed}
    facts = await wrap(external, db, clock, sleeps, rules).enrich(obs(**merged))
    assert set(external.values()) == {v for values in unlisted.values() for v in values}
    assert facts["ip:8.8.8.8"] == {"allowlisted": True}
    await wrap(internal, db, clock, sleeps, rules).enrich(
        obs(hosts=["jump1", "jump2"], users=["CORP\\svc-scanner", "dave"])
    )
    assert sorted(internal.values()) == ["dave", "jump2"]


def test_bad_networks_stop_start_up(tmp_path) -> None:
    for bad in ({"privacy": {"internal_networks": ["10.0.0.0/33"]}}, {"allowlist": {"ips": ["x"]}}):
        path = tmp_path / "fido.yml"
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match="FIDO_CONFIG"):
            load_policy(path)


SCREEN = Screen(PrivacyPolicy(**PRIVACY), Allowlist())
PRIVATE_NETS = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10")
]
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@st.composite
def private_ip(draw: st.DrawFn) -> str:
    net = draw(st.sampled_from(PRIVATE_NETS))
    offset = draw(st.integers(min_value=0, max_value=net.num_addresses - 1))
    return str(net.network_address + offset)


@settings(deadline=None)  # pure and fast; a busy CI machine must not fail it
@given(ip=private_ip(), label=LABEL, sub=st.lists(LABEL, max_size=3), path=LABEL)
def test_generated_internal_values_are_always_withheld(
    ip: str, label: str, sub: list[str], path: str
) -> None:
    name = ".".join([*sub, label, "corp.example"])
    host_ip = f"[{ip}]" if ":" in ip else ip
    assert SCREEN.withhold("ip", ip) == "internal"
    assert SCREEN.withhold("host", label) == "internal"  # no dot
    assert SCREEN.withhold("host", name.upper()) == "internal"
    assert SCREEN.withhold("domain", name) == "internal"
    assert SCREEN.withhold("url", f"https://{name}/{path}") == "internal"
    assert SCREEN.withhold("url", f"http://{host_ip}:8443/{path}") == "internal"
    assert SCREEN.withhold("url", f"https://x.com/{path}?e={label}%40{name}") == "internal"
    assert SCREEN.withhold("user", label) == "internal"
    assert SCREEN.withhold("hash", SHA_A) is None
