"""Hostile input, generated: schemathesis against a real ``fido serve``.

Starts ``fido serve`` (a subprocess on loopback, SQLite in a temporary directory, every
detector in the registry enabled, a fake Slack), then runs schemathesis (``st run``) from the
served ``/openapi.json`` with the webhook token — valid and invalid bodies, headers, path
values — again and again with new seeds until the server has answered at least
``--requests`` requests. Counts come from the server's own access log, by status.

Fails (exit 1) on any 5xx, on a schemathesis failure, or if ``fido serve`` dies or does
not stop cleanly on SIGTERM.

    python benchmarks/fuzz_webhooks.py [--requests 10000] [--seed 1]

The test suite runs the same at a few hundred requests (tests/bot/test_openapi_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import integrations  # noqa: E402
from bot.settings import ENV_NAMES  # noqa: E402
from pipeline import plugins  # noqa: E402
from tests.fixtures.servers import free_port  # noqa: E402
from tests.fixtures.slack import FakeSlack  # noqa: E402

TOKEN = "fuzz-webhook-token"
_ACCESS = re.compile(
    r'uvicorn\.access: .* "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})'
)


@dataclass
class Outcome:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # the 5xx access-log lines
    detectors: list[str] = field(default_factory=list)  # enabled, as /openapi.json says
    schemathesis_failed: bool = False
    report: str = ""  # schemathesis's output of a failing run
    exit_code: int | None = None  # fido serve's, after SIGTERM
    log: str = ""

    @property
    def ok(self) -> bool:
        return not self.server_errors and not self.schemathesis_failed and self.exit_code == 0


def _environment(workdir: Path, slack: FakeSlack, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(
        FIDO_DATABASE_URL=f"sqlite:///{workdir / 'fido.db'}",
        FIDO_CONFIG=str(workdir / "fido.yml"),
        FIDO_HTTP_PORT=str(port),
        FIDO_WEBHOOK_TOKEN=TOKEN,
        FIDO_SLACK_CHANNEL="C0FUZZ",
        SLACK_BOT_TOKEN=slack.token,
        SLACK_SIGNING_SECRET="fuzz-signing-secret",
        SLACK_API_URL=slack.base_url,
        FIDO_LOG_LEVEL="DEBUG",  # uvicorn's access log (off at INFO) counts the requests
    )
    return env


def _wait_healthy(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"fido serve did not start:\n{log.read_text()}")
        time.sleep(0.2)


def _served(log: str) -> tuple[int, Counter[int], list[str]]:
    statuses: Counter[int] = Counter()
    errors = []
    for line in log.splitlines():
        found = _ACCESS.search(line)
        if found is None:
            continue
        status = int(found["status"])
        statuses[status] += 1
        if status >= 500:
            errors.append(line)
    return sum(statuses.values()), statuses, errors


def detectors() -> list[str]:
    """Every detector Fido ships (``integrations``): a new one is fuzzed without being
    listed here. Test doubles a test process registered are not, ``fido serve`` has none."""
    integrations.load_all()
    return [
        name
        for name in plugins.detectors.names()
        if plugins.detectors.get(name).__module__.startswith(f"{integrations.__name__}.")
    ]


def fuzz(
    requests: int, workdir: Path, *, seed: int = 1, examples: int = 30, workers: int = 4
) -> Outcome:
    """Fuzz until the server has answered ``requests`` requests; ``examples`` per operation
    and schemathesis run (each run with the next seed)."""
    (workdir / "fido.yml").write_text(
        "enrichers: []\nactions: [{responder: log_only}]\n"
        + "detectors:\n"
        + "".join(f"  {name}: {{}}\n" for name in detectors())
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = workdir / "fido.log"
    outcome = Outcome()
    with FakeSlack() as slack, log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"],
            env=_environment(workdir, slack, port),
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(process, base, log)
            spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
            outcome.detectors = spec["paths"]["/webhooks/{detector}"]["parameters"][0]["schema"][
                "enum"
            ]
            run = 0
            while outcome.requests < requests and not outcome.schemathesis_failed:
                done = subprocess.run(
                    [
                        str(Path(sys.executable).with_name("st")),
                        "run",
                        f"{base}/openapi.json",
                        "--header",
                        f"Authorization: Bearer {TOKEN}",
                        "--checks",
                        "not_a_server_error",
                        "--max-examples",
                        str(examples),
                        "--seed",
                        str(seed + run),
                        "--workers",
                        str(workers),
                        "--generation-database",
                        "none",
                        "--request-timeout",
                        "30",
                        "--suppress-health-check",
                        "all",
                        "--no-color",
                    ],
                    cwd=workdir,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                run += 1
                if done.returncode != 0:
                    outcome.schemathesis_failed = True
                    outcome.report = done.stdout[-20_000:] + done.stderr[-5_000:]
                if process.poll() is not None:
                    break  # fido serve crashed: reported below
                counted = outcome.requests
                outcome.requests, outcome.statuses, outcome.server_errors = _served(
                    log.read_text(errors="replace")
                )
                if outcome.server_errors:
                    break
                if outcome.requests == counted:  # nothing counted: never loop for ever
                    raise RuntimeError("schemathesis ran, but no request is in fido's log")
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                outcome.exit_code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                outcome.exit_code = process.wait()
    outcome.log = log.read_text(errors="replace")
    outcome.requests, outcome.statuses, outcome.server_errors = _served(outcome.log)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--examples", type=int, default=100, help="per operation and run")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fido-fuzz-") as workdir:
        outcome = fuzz(args.requests, Path(workdir), seed=args.seed, examples=args.examples)
    summary = {
        "requests": outcome.requests,
        "by_status": dict(sorted(outcome.statuses.items())),
        "server_errors": len(outcome.server_errors),
        "schemathesis_failed": outcome.schemathesis_failed,
        "fido_exit_code": outcome.exit_code,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary))
    for line in outcome.server_errors[:20]:
        print(line)
    if outcome.schemathesis_failed:
        print(outcome.report)
    if outcome.exit_code != 0:
        print(outcome.log[-5_000:])
    return 0 if outcome.ok and outcome.requests >= args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
