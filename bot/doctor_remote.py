"""``fido doctor``'s checks of the systems Fido reaches: the directory, each enricher's
vendor, and each source and responder endpoint.

- **Directory** (when a plugin in the policy uses it): bind with ``FIDO_AD_*``, read the
  base DN, run one sample search for a user.
- **Enrichers**: the cheapest harmless call each vendor documents (VirusTotal's user object
  by API key, GreyNoise's ``/ping``, MISP's ``/servers/getVersion``, Jamf's OAuth token):
  it proves the key and spends no lookup quota. A vendor without such a call is skipped,
  saying why.
- **Endpoints**: a TCP connection to every address a source's or responder's options name
  (``*url``, ``*host`` with ``*port``: an OpenVPN management interface, a vendor API) —
  reachable, nothing sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.doctor import Check, failed, ok, skipped
from bot.doctor_settings import SettingsReport
from bot.settings import Settings
from pipeline.errors import FidoError
from pipeline.policy import Policy


@dataclass(frozen=True)
class Probe:
    """A harmless call proving a vendor's credentials: ``request(options, environ)``
    gives (method, path, keyword arguments for httpx)."""

    request: Callable[[Mapping[str, Any], Mapping[str, str]], tuple[str, str, dict[str, Any]]]
    secrets: tuple[str, ...]  # the options naming the environment variables it uses


def _key(options: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    return environ.get(str(options.get("api_key_env")), "")


PROBES: dict[str, Probe] = {
    # GET /api/v3/users/{id}: "User ID or API key"; returns the key's own user and quotas
    "virustotal": Probe(
        lambda o, e: ("GET", f"/api/v3/users/{_key(o, e)}", {"headers": {"x-apikey": _key(o, e)}}),
        ("api_key_env",),
    ),
    "greynoise": Probe(lambda o, e: ("GET", "/ping", {"headers": {"key": _key(o, e)}}), ()),
    "misp": Probe(
        lambda o, e: (
            "GET",
            "/servers/getVersion",
            {"headers": {"Authorization": _key(o, e), "Accept": "application/json"}},
        ),
        (),
    ),
    "jamf": Probe(
        lambda o, e: (
            "POST",
            "/api/oauth/token",
            {
                "data": {
                    "client_id": e.get(str(o.get("client_id_env")), ""),
                    "client_secret": e.get(str(o.get("client_secret_env")), ""),
                    "grant_type": "client_credentials",
                },
                "headers": {"Accept": "application/json"},
            },
        ),
        (),
    ),
}
NOT_CHECKED = {
    "abuseipdb": "AbuseIPDB documents no call that spends no quota; the first lookup tests the key",
}


async def checks(
    settings: Settings,
    policy: Policy,
    *,
    report: SettingsReport,
    environ: Mapping[str, str],
    timeout: float,
    http: Any = None,
) -> list[Check]:
    """``http``: the ``httpx.AsyncClient`` for the vendors' calls (one is made if None)."""
    found = await directory_checks(report, environ, timeout=timeout)
    found += await enricher_checks(policy, report, environ, timeout=timeout, http=http)
    found += await endpoint_checks(policy, timeout=timeout)
    return found


# -- the directory -----------------------------------------------------------------------


async def directory_checks(
    report: SettingsReport, environ: Mapping[str, str], *, timeout: float
) -> list[Check]:
    if not report.directory_users:
        return []
    if any(p.name.startswith("FIDO_AD_") for p in report.problems):
        return [skipped("directory", "its settings are missing or wrong (reported above)")]
    from integrations.directory import ActiveDirectory, ADConfig

    config = ADConfig.from_environ(environ)
    directory = ActiveDirectory(config)
    base = config.base_dn
    fix_bind = "check FIDO_AD_URL, FIDO_AD_BIND_DN and FIDO_AD_PASSWORD (and the TLS settings)"
    try:
        try:
            await asyncio.wait_for(
                directory._call(lambda ldap: ldap.read(base, ["distinguishedName"]), "bind"),
                timeout,
            )
        except FidoError as exc:
            text = str(exc)
            if "no directory entry" in text:
                return [
                    ok("directory bind", f"bound to {config.url} as {config.bind_dn}"),
                    failed(
                        "directory base DN",
                        f"{base} does not exist",
                        "check FIDO_AD_BASE_DN (e.g. DC=corp,DC=example,DC=com)",
                    ),
                ]
            return [failed("directory bind", text, fix_bind)]
        except TimeoutError:
            return [failed("directory bind", f"no answer within {timeout:g}s", fix_bind)]
        results = [
            ok("directory bind", f"bound to {config.url} as {config.bind_dn}"),
            ok("directory base DN", f"{base} is readable"),
        ]
        try:
            users = await asyncio.wait_for(
                directory._call(
                    lambda ldap: ldap.search(
                        base,
                        "(&(objectCategory=person)(objectClass=user))",
                        ["sAMAccountName"],
                        size_limit=1,
                    ),
                    "sample search",
                ),
                timeout,
            )
        except (FidoError, TimeoutError) as exc:
            results.append(
                failed(
                    "directory search",
                    str(exc) or "timed out",
                    "give the bind account read access to users under the base DN",
                )
            )
            return results
        if not users:
            results.append(
                failed(
                    "directory search",
                    f"no user found under {base}",
                    "give the bind account read access to users, or check FIDO_AD_BASE_DN",
                )
            )
        else:
            results.append(ok("directory search", "a sample user search answered"))
        return results
    finally:
        await directory.close()


# -- enrichers ---------------------------------------------------------------------------


async def enricher_checks(
    policy: Policy,
    report: SettingsReport,
    environ: Mapping[str, str],
    *,
    timeout: float,
    http: Any = None,
) -> list[Check]:
    import httpx

    if http is None:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as own:
            return await enricher_checks(policy, report, environ, timeout=timeout, http=own)
    from pipeline.plugins import lookups

    found: list[Check] = []
    for name in policy.enrichers:
        label = f"enricher {name}"
        if any(label in p.needed_by or p.name == label for p in report.problems):
            found.append(skipped(label, "its settings are missing or wrong (reported above)"))
            continue
        if label in report.directory_users:
            found.append(skipped(label, "uses the directory (checked above)"))
            continue
        probe = PROBES.get(name)
        if probe is None or name not in lookups:
            reason = NOT_CHECKED.get(name, "nothing remote to check")
            found.append(skipped(label, f"not checked: {reason}"))
            continue
        options = lookups.get(name).Options.model_validate(policy.enricher_options.get(name, {}))
        found.append(await _vendor(http, label, name, probe, options, environ))
    return found


async def _vendor(
    http: Any,
    label: str,
    name: str,
    probe: Probe,
    options: Any,
    environ: Mapping[str, str],
) -> Check:
    from integrations.enrichers.httpbase import raise_for_status, redact, send

    values = options.model_dump()
    base = str(values.get("base_url", "")).rstrip("/")
    method, path, kwargs = probe.request(values, environ)
    secrets = [v for k, v in values.items() if k.endswith("_env") and isinstance(v, str)]
    names = ", ".join(str(v) for v in secrets) or "its credentials"
    values_of_secrets = [environ.get(v, "") for v in secrets]
    try:
        response = await send(http, method, base + path, vendor=name, **kwargs)
        raise_for_status(response, vendor=name, secrets=values_of_secrets)
    except FidoError as exc:
        text = redact(str(exc), values_of_secrets)  # a key may be in the path (VirusTotal)
        if "credentials refused" in text or (method == "POST" and "HTTP 400" in text):
            return failed(label, text, f"check {names} (the key may be wrong or revoked)")
        if "rate limited" in text:
            return failed(label, text, "the vendor's quota is spent for now: try again later")
        return failed(label, text, f"check base_url ({base}) and that Fido can reach it")
    return ok(label, f"{base} accepted the credentials")


# -- source and responder endpoints --------------------------------------------------------


def endpoints(options: Mapping[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(option, host, port) for every network address in a plugin's options."""
    for key, value in options.items():
        if isinstance(value, str) and key.endswith("url") and "://" in value:
            parts = urlsplit(value)
            if parts.scheme in ("http", "https") and parts.hostname:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                yield key, parts.hostname, port
        elif key.endswith("host") and isinstance(value, str) and value:
            port_key = key[: -len("host")] + "port"
            given = options.get(port_key)
            if isinstance(given, int):
                yield f"{key} and {port_key}", value, given


async def endpoint_checks(policy: Policy, *, timeout: float) -> list[Check]:
    from pipeline.plugins import responders, sources

    planned: list[tuple[str, str, Mapping[str, Any]]] = []
    for name, rules in policy.sources.items():
        if rules.enabled and rules.type in sources:
            planned.append((f"source {name}", rules.type, rules.options))
    seen: set[str] = set()
    for rule in policy.actions:
        if rule.responder not in seen and rule.responder in responders:
            seen.add(rule.responder)
            planned.append((f"responder {rule.responder}", rule.responder, rule.options))
    found: list[Check] = []
    for label, kind, raw in planned:
        registry = sources if label.startswith("source") else responders
        try:
            values = registry.get(kind).Options.model_validate(raw).model_dump()
        except Exception:  # reported with the settings
            continue
        for option, host, port in endpoints(values):
            found.append(await _connect(label, option, host, port, timeout))
    return found


async def _connect(label: str, option: str, host: str, port: int, timeout: float) -> Check:
    where = f"{host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        reason = f"no answer from {where} within {timeout:g}s"
    except OSError as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else exc.strerror
        reason = f"cannot connect to {where}: {why or type(exc).__name__}"
    else:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return ok(label, f"{where} ({option}) is reachable")
    return failed(label, reason, f"check that it runs and the policy's {option}")
