"""The directory connection: reuse, reconnection, paging, failures, and TLS (LDAPS and
StartTLS) verified against the CA that signed the DC's certificate."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from integrations.directory import ActiveDirectory, ADConfig
from integrations.enrichers.active_directory import ActiveDirectoryEnricher
from pipeline.errors import IntegrationError, NotFoundError
from pipeline.observables import Observables
from tests.fixtures.samba import SambaAD
from tests.fixtures.servers import free_port
from tests.integrations.directory.conftest import Org
from tests.integrations.directory.helpers import NORMAL, PASSWORD, unique, user_facts

pytestmark = pytest.mark.samba

TLS_MODES = ["ldaps", "start_tls"]


def tls(samba_ad: SambaAD, mode: str) -> dict[str, object]:
    return {"url": samba_ad.ldaps_url} if mode == "ldaps" else {"start_tls": True}


async def test_find_user_returns_plain_values(org: Org, directory: ActiveDirectory) -> None:
    user = await directory.find_user(org.alice)
    assert user is not None
    assert user["userAccountControl"] == NORMAL
    assert user["manager"] == org.boss_dn
    assert user["objectSid"].startswith("S-1-5-21-")
    assert isinstance(user["pwdLastSet"], int)
    assert sorted(user["memberOf"]) == sorted(
        f"CN={group},CN=Users,DC=fido,DC=test" for group in org.groups
    )
    with pytest.raises(NotFoundError, match="nosuchuser"):
        await directory.get_user("nosuchuser")


async def test_missing_entry_is_not_found(directory: ActiveDirectory) -> None:
    with pytest.raises(NotFoundError):
        await directory.get_user_account_control("CN=nobody,CN=Users,DC=fido,DC=test")
    assert await directory.get_display_name("CN=nobody,CN=Users,DC=fido,DC=test") is None


async def test_groups_are_read_in_pages(samba_ad: SambaAD, org: Org) -> None:
    groups = [unique("paged ") for _ in range(5)]
    for group in groups:
        samba_ad.create_group(group)
    name = unique("many")
    samba_ad.create_user(name, PASSWORD, groups=groups)
    async with ActiveDirectory(samba_ad.config(page_size=2)) as ad:
        assert (await user_facts(ad, name))["groups"] == sorted(groups, key=str.casefold)


async def test_wrong_password_is_an_integration_error(samba_ad: SambaAD) -> None:
    config = samba_ad.config(password=SecretStr("Not-The-Pw-42"))
    assert "Not-The-Pw-42" not in repr(config)
    async with ActiveDirectory(config) as ad:
        assert "Not-The-Pw-42" not in repr(ad)
        with pytest.raises(IntegrationError, match="invalidCredentials") as caught:
            await ad.find_user("anyone")
        with pytest.raises(IntegrationError):
            await ActiveDirectoryEnricher(ad).enrich(Observables(users=["anyone"]))
        with pytest.raises(IntegrationError):
            await ActiveDirectoryEnricher(ad).enrich(Observables(hosts=["pc1"]))
    assert "Not-The-Pw-42" not in str(caught.value)
    assert samba_ad.admin_dn in str(caught.value)


async def test_unreachable_server_is_an_integration_error(samba_ad: SambaAD) -> None:
    config = samba_ad.config(url=f"ldap://127.0.0.1:{free_port()}", timeout=2.0)
    async with ActiveDirectory(config) as ad:
        with pytest.raises(IntegrationError, match="cannot connect"):
            await ad.find_user("anyone")


async def test_the_connection_is_reused_and_replaced_when_dropped(
    org: Org, directory: ActiveDirectory
) -> None:
    assert await directory.find_user(org.alice) is not None
    first = directory._ldap._conn  # white-box: the shared connection
    assert first is not None
    assert await directory.describe_user(org.boss) is not None
    assert directory._ldap._conn is first
    first.socket.shutdown(socket.SHUT_RDWR)  # as a DC closing an idle connection does
    assert await directory.find_user(org.alice) is not None
    assert directory._ldap._conn is not first
    await directory.close()
    assert directory._ldap._conn is None
    assert await directory.find_user(org.alice) is not None  # reconnects when used again


@pytest.mark.parametrize("mode", TLS_MODES)
async def test_tls_verified_against_the_dc_ca(samba_ad: SambaAD, org: Org, mode: str) -> None:
    config = samba_ad.config(ca_file=samba_ad.ca_file, **tls(samba_ad, mode))
    async with ActiveDirectory(config) as ad:
        assert (await user_facts(ad, org.alice))["manager_name"] == "Mary Boss"
        conn = ad._ldap._conn
        assert conn is not None and conn.socket.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("mode", TLS_MODES)
async def test_a_wrong_ca_fails_clearly(samba_ad: SambaAD, org: Org, mode: str) -> None:
    config = samba_ad.config(ca_file=samba_ad.other_ca_file, **tls(samba_ad, mode))
    async with ActiveDirectory(config) as ad:
        with pytest.raises(IntegrationError) as caught:
            await ad.find_user(org.alice)
    message = str(caught.value)
    assert "TLS handshake" in message and str(samba_ad.other_ca_file) in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert samba_ad.admin_password not in message


@pytest.mark.parametrize("mode", TLS_MODES)
async def test_a_certificate_for_another_name_fails(samba_ad: SambaAD, org: Org, mode: str) -> None:
    """The same server, the right CA, but a name the certificate does not hold: the DC's
    address written as one number, which the resolver accepts and TLS sees as a host name."""
    number = int(ipaddress.IPv4Address(samba_ad.address))
    port = 636 if mode == "ldaps" else 389
    url = f"{'ldaps' if mode == 'ldaps' else 'ldap'}://{number}:{port}"
    config = samba_ad.config(url=url, ca_file=samba_ad.ca_file, start_tls=mode == "start_tls")
    async with ActiveDirectory(config) as ad:
        with pytest.raises(IntegrationError, match=f"mismatch.*issued for '{number}'"):
            await ad.find_user(org.alice)


@pytest.mark.parametrize("mode", TLS_MODES)
async def test_system_cas_do_not_trust_a_private_ca(samba_ad: SambaAD, org: Org, mode: str) -> None:
    async with ActiveDirectory(samba_ad.config(**tls(samba_ad, mode))) as ad:
        with pytest.raises(IntegrationError, match="TLS handshake .* the system CAs"):
            await ad.find_user(org.alice)


@pytest.mark.parametrize("mode", TLS_MODES)
async def test_verification_can_be_turned_off(samba_ad: SambaAD, org: Org, mode: str) -> None:
    config = samba_ad.config(
        verify_tls=False, ca_file=samba_ad.other_ca_file, **tls(samba_ad, mode)
    )
    async with ActiveDirectory(config) as ad:
        assert await ad.find_user(org.alice) is not None


def test_config_rejects_bad_settings(tmp_path: Path) -> None:
    base = {"bind_dn": "CN=x", "password": "secret", "base_dn": "DC=x"}
    with pytest.raises(ValidationError, match="ldap:// or ldaps://"):
        ADConfig(url="http://dc.example.com", **base)
    with pytest.raises(ValidationError, match="already encrypted"):
        ADConfig(url="ldaps://dc.example.com", start_tls=True, **base)
    with pytest.raises(ValidationError, match="not a readable PEM CA bundle"):
        ADConfig(url="ldaps://dc", ca_file=tmp_path / "missing.pem", **base)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match="not a readable PEM CA bundle"):
        ADConfig(url="ldaps://dc", ca_file=junk, **base)
    config = ADConfig(url="ldaps://dc.example.com", **base)
    assert (config.host, config.port, config.uses_tls) == ("dc.example.com", 636, True)
    assert ADConfig(url="ldap://dc", **base).port == 389
    assert "secret" not in repr(ADConfig(url="ldap://dc", **base))
