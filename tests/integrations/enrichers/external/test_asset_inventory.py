from __future__ import annotations

import os
from pathlib import Path

import pytest

from integrations.enrichers.asset_inventory import AssetInventoryLookup
from pipeline.errors import ConfigError
from pipeline.plugins import Context, Lookup, lookups
from tests.integrations.enrichers.external.vendor import build

CSV = """\
pattern,owner,criticality,zone,description
web-*,web-team,server,dmz,public web tier
web-pay-*,payments,Crown-Jewel,pci,card processing front end
web-pay-01,payments-oncall,crown-jewel,pci,the primary
10.0.0.0/8,netops,workstation,corp,everything internal
10.20.0.0/16,payments,server,pci,payments VLANs
10.20.4.17,it,workstation,corp,alice's laptop (static lease)
db-??,dba,server,,
"""

YAML = """\
assets:
  - pattern: build-*
    owner: devex
    criticality: server
  - pattern: 192.168.50.0/24
    owner: lab
    zone: lab
    description: the lab
  - pattern: jump-01
    owner: secops
    criticality: crown-jewel
    zone: admin
"""


def write(path: Path, text: str, *, bump: int = 0) -> Path:
    path.write_text(text)
    if bump:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))
    return path


@pytest.fixture
def csv_lookup(tmp_path: Path) -> AssetInventoryLookup:
    return AssetInventoryLookup(path=write(tmp_path / "assets.csv", CSV))


def test_registered_and_satisfies_the_protocol(csv_lookup: AssetInventoryLookup) -> None:
    assert lookups.get("asset_inventory") is AssetInventoryLookup
    assert isinstance(csv_lookup, Lookup)
    assert csv_lookup.provider == "asset_inventory" and csv_lookup.external is False
    assert csv_lookup.kinds == {"host", "ip"}


@pytest.mark.parametrize(
    ("kind", "value", "pattern", "owner"),
    [
        ("host", "web-pay-01", "web-pay-01", "payments-oncall"),  # exact beats globs
        ("host", "WEB-PAY-01.corp.example", "web-pay-01", "payments-oncall"),  # FQDN, any case
        ("host", "web-pay-02", "web-pay-*", "payments"),  # longer glob beats shorter
        ("host", "web-07", "web-*", "web-team"),
        ("host", "db-12", "db-??", "dba"),
        ("ip", "10.20.4.17", "10.20.4.17", "it"),  # exact address beats subnets
        ("ip", "10.20.9.9", "10.20.0.0/16", "payments"),  # smallest subnet wins
        ("ip", "10.3.3.3", "10.0.0.0/8", "netops"),
    ],
)
async def test_most_specific_row_wins(
    csv_lookup: AssetInventoryLookup, kind: str, value: str, pattern: str, owner: str
) -> None:
    facts = await csv_lookup.lookup(kind, value)  # type: ignore[arg-type]
    assert facts is not None
    assert (facts["pattern"], facts["owner"]) == (pattern, owner)


async def test_facts_carry_the_row(csv_lookup: AssetInventoryLookup) -> None:
    assert await csv_lookup.lookup("host", "web-pay-02") == {
        "pattern": "web-pay-*",
        "owner": "payments",
        "criticality": "crown-jewel",  # normalised to lower case
        "zone": "pci",
        "description": "card processing front end",
    }
    assert await csv_lookup.lookup("host", "db-1") is None  # ?? needs two characters
    assert await csv_lookup.lookup("host", "db-12") == {
        "pattern": "db-??",
        "owner": "dba",
        "criticality": "server",  # empty cells left out
    }


async def test_unknown_values(csv_lookup: AssetInventoryLookup) -> None:
    assert await csv_lookup.lookup("host", "mail-01") is None
    assert await csv_lookup.lookup("ip", "192.0.2.1") is None
    assert await csv_lookup.lookup("user", "alice") is None
    assert await csv_lookup.lookup("ip", "2001:db8::1") is None


async def test_globs_beat_subnets_and_ties_go_to_the_first_row(tmp_path: Path) -> None:
    lookup = AssetInventoryLookup(
        path=write(
            tmp_path / "a.csv",
            (
                "pattern,owner\n10.1.0.0/24,subnet\n10.1.0.*,glob\nsrv-?,first\nsrv-*,second\n"
                "app-*,one\napp-*,two\n"
            ),
        )
    )
    assert (await lookup.lookup("ip", "10.1.0.5") or {})["owner"] == "glob"
    assert (await lookup.lookup("host", "srv-1") or {})["owner"] == "first"  # 4 vs 4 literals
    assert (await lookup.lookup("host", "app-9") or {})["owner"] == "one"


async def test_yaml_file(tmp_path: Path) -> None:
    lookup = AssetInventoryLookup(path=write(tmp_path / "assets.yml", YAML))
    assert await lookup.lookup("host", "jump-01") == {
        "pattern": "jump-01",
        "owner": "secops",
        "criticality": "crown-jewel",
        "zone": "admin",
    }
    assert (await lookup.lookup("ip", "192.168.50.7") or {})["zone"] == "lab"
    assert (await lookup.lookup("host", "build-linux-3") or {})["owner"] == "devex"
    plain = AssetInventoryLookup(path=write(tmp_path / "list.yaml", "- pattern: x\n  owner: y\n"))
    assert await plain.lookup("host", "x") == {"pattern": "x", "owner": "y"}


async def test_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "assets.csv", "pattern,owner\nweb-*,web-team\n")
    lookup = AssetInventoryLookup(path=path)
    assert (await lookup.lookup("host", "web-1") or {})["owner"] == "web-team"
    write(path, "pattern,owner\nweb-*,platform\n", bump=5)
    assert (await lookup.lookup("host", "web-1") or {})["owner"] == "platform"
    replacement = write(tmp_path / "new.csv", "pattern,owner\nweb-*,sre\n")
    os.replace(replacement, path)  # an atomic replace is a new inode
    assert (await lookup.lookup("host", "web-1") or {})["owner"] == "sre"


async def test_is_not_reread_when_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.enrichers import asset_inventory

    path = write(tmp_path / "assets.csv", CSV)
    lookup = AssetInventoryLookup(path=path)
    loads: list[Path] = []
    real = asset_inventory.load

    def counting_load(p: Path) -> list[asset_inventory.Asset]:
        loads.append(p)
        return real(p)

    monkeypatch.setattr(asset_inventory, "load", counting_load)
    for _ in range(3):
        await lookup.lookup("host", "web-1")
    assert loads == []
    write(path, CSV, bump=5)  # same content, new mtime: read once more
    for _ in range(3):
        await lookup.lookup("host", "web-1")
    assert loads == [path]


async def test_bad_edit_is_reported_until_fixed(tmp_path: Path) -> None:
    path = write(tmp_path / "assets.csv", "pattern,owner\nweb-*,web-team\n")
    lookup = AssetInventoryLookup(path=path)
    write(path, "pattern,owner\nweb-*,web-team\n10.0.0.1/8,oops\n", bump=5)
    for _ in range(2):
        with pytest.raises(ConfigError, match="row 2 \\(line 3\\).*10.0.0.1/8"):
            await lookup.lookup("host", "web-1")
    write(path, "pattern,owner\nweb-*,fixed\n", bump=10)
    assert (await lookup.lookup("host", "web-1") or {})["owner"] == "fixed"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "owner,zone\nx,y\n", "header row with a pattern column"),
        ("a.csv", "pattern,owner\nweb-*,a\n,b\n", "row 2 \\(line 3\\): pattern is empty"),
        ("a.csv", "pattern,owner\nweb-*,a,extra\n", "row 1 \\(line 2\\): more cells"),
        ("a.csv", "pattern,ownr\nweb-*,a\n", "row 1 \\(line 2\\): unknown column\\(s\\) ownr"),
        ("a.csv", "pattern,owner\n10.1.2.0/33,a\n", "row 1 .*not a subnet"),
        ("a.csv", "pattern,owner\nweb 1,a\n", "row 1 .*contains spaces"),
        ("a.yml", "assets:\n  - pattern: a\n  - owner: b\n", "row 2: pattern is empty"),
        ("a.yml", "- pattern: a\n- just-a-string\n", "row 2: expected a mapping"),
        ("a.yml", "- pattern: a\n  owner: [x, y]\n", "row 1: owner must be text"),
        ("a.yml", "pattern: a\n", "must hold a list"),
        ("a.yml", "- pattern: [unclosed\n", "not valid YAML"),
        ("a.json", "[]", "must end in .csv, .yml or .yaml"),
    ],
)
def test_malformed_files_name_the_row(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AssetInventoryLookup(path=write(tmp_path / name, text))


def test_missing_file_and_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        AssetInventoryLookup(path=tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="^lookup asset_inventory: option 'path' is required$"):
        build(AssetInventoryLookup, options={}, context=Context())
    with pytest.raises(ConfigError, match="^lookup asset_inventory: cannot read"):
        build(AssetInventoryLookup, options={"path": str(tmp_path / "no.csv")}, context=Context())
    path = write(tmp_path / "assets.csv", CSV)
    lookup = build(AssetInventoryLookup, options={"path": str(path)}, context=Context())
    assert lookup.path == path


async def test_empty_files_know_nothing(tmp_path: Path) -> None:
    assert (
        await AssetInventoryLookup(path=write(tmp_path / "a.yml", "")).lookup("host", "x") is None
    )
    empty_csv = AssetInventoryLookup(path=write(tmp_path / "a.csv", "pattern,owner\n"))
    assert await empty_csv.lookup("host", "x") is None
