"""The deployment files agree with the code: the Dockerfile, the systemd unit, the Compose
file and docs/deployment.md name real commands, real endpoints and documented settings.
(There is no Docker daemon here: what can be checked without one is checked.)"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import typer.main
import yaml
from pydantic import SecretStr

from bot.cli import app as cli_app
from bot.server import build_http_app
from pipeline.db import Database
from pipeline.policy import load_policy
from tests.bot.test_serve import clean_env, fido
from tests.fixtures.servers import free_port
from tests.fixtures.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "fido.service"
COMPOSE = ROOT / "deploy" / "compose.yml"
GUIDE = ROOT / "docs" / "deployment.md"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def documented_settings() -> set[str]:
    """Every name .env.example describes, set or commented out."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))


def commands() -> dict[str, set[str]]:
    """Every ``fido`` command and, for a group (``db``, ``audit``…), its subcommands."""
    group: Any = typer.main.get_command(cli_app)
    return {name: set(getattr(command, "commands", {})) for name, command in group.commands.items()}


def is_command(argv: list[str]) -> bool:
    """Whether ``argv`` starts with a real command ("serve", "db upgrade"; not "db")."""
    words = [w for w in argv if not w.startswith("-")]
    known = commands()
    if not words or words[0] not in known:
        return False
    subcommands = known[words[0]]
    return not subcommands or (len(words) > 1 and words[1] in subcommands)


def routes() -> set[str]:
    api = build_http_app(
        db=Database("sqlite:///unused.db"), detectors={}, webhook_token=SecretStr("t")
    )
    return {getattr(route, "path", "") for route in api.routes}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def unit() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        assert current is not None, line
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line}"
        sections[current].append((key, value))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


# -- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    steps = dockerfile()
    assert {keyword for keyword, _ in steps} <= INSTRUCTIONS
    stages = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert len(stages) >= 2
    for index in stages:
        image = steps[index][1].split()[0]
        assert ":" in image and not image.endswith(":latest"), image
    final = steps[stages[-1] :]
    assert any(k == "COPY" and a.startswith("--from=") for k, a in final)  # only the result
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    first_user = next(i for i, (k, _) in enumerate(final) if k == "USER")
    start = next(i for i, (k, _) in enumerate(final) if k == "ENTRYPOINT")
    assert first_user < start


def test_dockerfile_runs_fido_serve_and_checks_a_real_endpoint() -> None:
    steps = dockerfile()
    entry = yaml.safe_load(next(a for k, a in steps if k == "ENTRYPOINT"))
    cmd = yaml.safe_load(next(a for k, a in steps if k == "CMD"))
    assert entry == ["fido"] and is_command(cmd), cmd
    [check] = [a for k, a in steps if k == "HEALTHCHECK"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", check)
    assert url is not None
    assert url.group(2) in routes()
    env = " ".join(a for k, a in steps if k == "ENV")
    settings = dict(re.findall(r"\b(FIDO_[A-Z_]+)=(\S+)", env))
    assert set(settings) <= documented_settings()
    assert settings["FIDO_HTTP_HOST"] == "0.0.0.0"
    exposed = [a for k, a in steps if k == "EXPOSE"]
    assert exposed == [settings["FIDO_HTTP_PORT"]] == [url.group(1)]


def test_dockerfile_copies_what_the_package_needs_and_nothing_secret() -> None:
    steps = dockerfile()
    sources = []
    for keyword, args in steps:
        if keyword == "COPY" and not args.startswith("--from="):
            sources += shlex.split(args)[:-1]
    for source in sources:
        assert (ROOT / source).exists(), source
    pyproject = (ROOT / "pyproject.toml").read_text()
    readme = re.search(r'^readme = "([^"]+)"', pyproject, re.MULTILINE)
    assert readme is not None and readme.group(1) in sources  # pip install . reads it
    packages = re.search(r"include = \[([^\]]+)\]", pyproject)
    assert packages is not None
    for package in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert package in sources
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("*")] == "*"  # all out, then some in
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {s.rstrip("/").removeprefix("./") for s in sources} <= included
    assert not included & {".env", ".venv", ".git", "tests", "fido.db"}


# -- systemd -------------------------------------------------------------------------------


def test_unit_names_real_commands_and_documented_settings() -> None:
    sections = unit()
    assert set(sections) == {"Unit", "Service", "Install"}
    service = sections["Service"]
    [start] = values(service, "ExecStart")
    binary, *argv = shlex.split(start)
    assert binary.endswith("/bin/fido") and is_command(argv) and argv == ["serve"]
    reloads = values(service, "ExecReload")
    assert any(shlex.split(r)[1:2] == ["check-config"] for r in reloads)
    assert any("-HUP $MAINPID" in r for r in reloads)  # bot/reload.py reloads on SIGHUP
    assert values(service, "User") == ["fido"]
    [state] = values(service, "StateDirectory")
    assert values(service, "WorkingDirectory") == [f"/var/lib/{state}"]
    assert values(service, "KillSignal") == ["SIGTERM"]
    assert values(service, "Restart") == ["on-failure"]
    named = {v.partition("=")[0] for v in values(service, "Environment")}
    assert named and named <= documented_settings()
    assert values(sections["Install"], "WantedBy") == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    fido = Path(sys.executable).with_name("fido")
    assert fido.exists()
    copy = tmp_path / "fido.service"  # the binary where this checkout installed it
    copy.write_text(UNIT.read_text().replace("/opt/fido/bin/fido", str(fido)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # warnings (unknown keys, bad values) too


def test_serve_and_check_config_exist_as_the_unit_calls_them(tmp_path: Path) -> None:
    for argv in (["serve", "--help"], ["check-config", "--help"]):
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr


# -- Compose -------------------------------------------------------------------------------


def test_compose_parses_and_agrees_with_the_settings() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "fido"}
    fido, postgres = services["fido"], services["postgres"]
    environment = fido["environment"]
    assert set(environment) <= documented_settings()
    url = urlparse(environment["FIDO_DATABASE_URL"])
    database = postgres["environment"]
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert (url.username, url.password, url.path) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
        "/" + database["POSTGRES_DB"],
    )
    assert fido["depends_on"]["postgres"]["condition"] == "service_healthy"
    [env_file] = fido["env_file"]
    assert (COMPOSE.parent / env_file["path"]).resolve() == ROOT / ".env"
    assert (COMPOSE.parent / fido["build"]["context"] / fido["build"]["dockerfile"]).resolve() == (
        DOCKERFILE
    )
    [mount] = fido["volumes"]
    source, target, _ = mount.split(":")
    assert target == environment["FIDO_CONFIG"]
    load_policy(COMPOSE.parent / source)  # the policy it mounts is valid
    [port] = fido["ports"]
    assert port.rsplit(":", 1)[1] == environment["FIDO_HTTP_PORT"]


# what .env must hold for the Compose trial, and all it must hold (the guide says so)
TRIAL_SETTINGS = (
    "FIDO_WEBHOOK_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "FIDO_SLACK_CHANNEL",
)


def compose_section() -> str:
    guide = GUIDE.read_text()
    start = guide.index("## Trying it with Compose")
    return guide[start : guide.index("\n## ", start + 1)]


def test_the_compose_trial_starts_with_only_the_settings_it_asks_for(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    """``fido serve`` as the Compose file runs it — .env copied from .env.example with only
    the settings the guide names filled in, the service's environment over it, the policy it
    mounts: it starts and is ready."""
    fido_service = yaml.safe_load(COMPOSE.read_text())["services"]["fido"]
    [mount] = fido_service["volumes"]
    port = free_port()
    dotenv = dict(
        re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    )
    filled = dict(
        zip(TRIAL_SETTINGS, ("trial-token", fake_slack.token, "s", "C0TRIAL"), strict=True)
    )
    env = clean_env(**{**dotenv, **filled, **fido_service["environment"]})
    env.update(  # what only a container has: the postgres service, its own network
        FIDO_CONFIG=str((COMPOSE.parent / mount.split(":")[0]).resolve()),
        FIDO_DATABASE_URL=f"sqlite:///{tmp_path / 'fido.db'}",
        FIDO_HTTP_HOST="127.0.0.1",
        FIDO_HTTP_PORT=str(port),
        SLACK_API_URL=fake_slack.base_url,  # Slack's stand-in
    )
    process = fido("serve", env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the Compose trial never became ready"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    section = compose_section()
    for name in TRIAL_SETTINGS:
        assert name in section, name
    assert "FIDO_AD_" not in section.split("```")[1]  # the command block: nothing else to fill


def test_compose_replicas_get_names_and_ports_of_their_own() -> None:
    """``--scale fido=3`` makes three replicas: each named after its container's host name
    (a fixed FIDO_REPLICA would make the second refuse to start), each on its own port."""
    fido_service = yaml.safe_load(COMPOSE.read_text())["services"]["fido"]
    assert "FIDO_REPLICA" not in fido_service["environment"]
    assert "container_name" not in fido_service and "hostname" not in fido_service
    [port] = fido_service["ports"]
    address, host_ports, _ = port.split(":")
    low, _, high = host_ports.partition("-")
    assert address == "127.0.0.1" and high and int(high) - int(low) >= 2, port
    assert "--scale fido=" in compose_section()


# -- probes --------------------------------------------------------------------------------


def probed_path(command: str) -> str:
    path = re.search(r"http://127\.0\.0\.1:\d+(/[a-z]+)", command)
    assert path is not None, command
    return path.group(1)


def test_every_container_health_check_is_the_liveness_probe() -> None:
    """Docker's health status is what restarts or replaces a container (Swarm, autoheal):
    it must be ``/healthz``, which a database outage does not fail, never ``/readyz``."""
    [check] = [a for k, a in dockerfile() if k == "HEALTHCHECK"]
    assert probed_path(check) == "/healthz"
    fido = yaml.safe_load(COMPOSE.read_text())["services"]["fido"]
    if "healthcheck" in fido:  # else the image's own
        assert probed_path(" ".join(fido["healthcheck"]["test"])) == "/healthz"


def test_the_guide_puts_each_probe_to_its_purpose() -> None:
    guide = " ".join(GUIDE.read_text().split())
    assert "`livenessProbe` on `/healthz`" in guide
    assert "`readinessProbe` on `/readyz`" in guide
    assert "`HEALTHCHECK` on `GET /healthz`" in guide
    assert not re.search(r"health ?check on `GET /readyz`", guide)


# -- the guide -----------------------------------------------------------------------------


def test_the_guide_covers_each_topic_and_names_real_things() -> None:
    guide = GUIDE.read_text()
    headings = [h.lower() for h in re.findall(r"^#+ (.+)$", guide, re.MULTILINE)]
    for topic in (
        "systemd",
        "container",
        "compose",
        "reverse proxy",
        "socket mode",
        "replicas",
        "backups",
        "upgrading",
        "slack app",
        "health",
    ):
        assert any(topic in h for h in headings), topic
    for name in ("Dockerfile", "deploy/fido.service", "deploy/compose.yml"):
        assert name in guide, name
    mentioned = set(re.findall(r"`fido ([a-z-]+(?: [a-z-]+)?)", guide))
    assert mentioned
    for command in mentioned:
        assert is_command(command.split()), f"fido {command}"
    for setting in set(re.findall(r"\b((?:FIDO|SLACK)_[A-Z0-9_]+)", guide)):
        if setting.endswith("_"):  # a family, FIDO_AD_*
            assert any(s.startswith(setting) for s in documented_settings()), setting
        else:
            assert setting in documented_settings(), setting
    for path in re.findall(r"`GET (/[a-z]+)`", guide):
        assert path in routes(), path
