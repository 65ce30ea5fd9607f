"""``fido parse NAME FILE`` on each SIEM, identity and Mac detector: found through the
registry, the events printed as Fido would store them, a foreign payload one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bot.test_tools import fido
from tests.integrations.detectors.siem.expect import PAYLOADS

SAMPLES = {
    "splunk": ("webhook_alert.json", "Excessive failed logins"),
    "elastic": ("webhook_context_alerts.json", "Suspicious PowerShell Download"),
    "microsoft_sentinel": (
        "incident_trigger.json",
        "Suspicious sign-in followed by mailbox rule creation",
    ),
    "m365_defender": ("incidents_api.json", "Ransomware activity on one endpoint"),
    "wazuh": ("integration_webhook.json", "Windows: Logon Failure"),
    "google_workspace": ("pubsub_push.json", "Google identity: Leaked password"),
    "jamf_protect": ("alert_process.json", "Process resembling Atomic Stealer"),
}


@pytest.mark.parametrize("detector", sorted(SAMPLES))
def test_fido_parse_prints_the_events(detector: str, tmp_path: Path) -> None:
    sample, title = SAMPLES[detector]
    done = fido("parse", detector, str(PAYLOADS / detector / sample), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [event] = json.loads(done.stdout)
    assert event["detector"] == detector
    assert event["title"].startswith(title)


def test_fido_parse_names_what_a_detector_expected(tmp_path: Path) -> None:
    other = PAYLOADS / "splunk" / "webhook_alert.json"
    done = fido("parse", "wazuh", str(other), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().strip() == (
        "fido: wazuh: not a Wazuh alert: expected an alert (rule with level and "
        "description, and agent or manager)"
    )
