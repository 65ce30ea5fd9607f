"""The IMAP source's mail rules and folder quoting, without a server."""

from __future__ import annotations

import json
from email.message import EmailMessage
from typing import Any

import pytest

from integrations.sources.imap import IMAPSource, mailbox_name
from integrations.sources.imap_rules import MailRule, RuleOptions, payloads_for
from pipeline.errors import ConfigError
from tests.integrations.sources.build import build_source


def rule(**value: Any) -> MailRule:
    return MailRule.from_options(RuleOptions.model_validate(value))


def build(**options: Any) -> IMAPSource:
    source: IMAPSource = build_source("imap", options, name="mail", environ={"PW": "secret"})
    return source


def mail(
    sender: str = "Guard <guard@sec.example>",
    subject: str = "Alert 7: ransomware on pc-9",
    text: str | None = "Detected on pc-9 for user carol",
    html: str | None = None,
    **headers: str,
) -> bytes:
    message = EmailMessage()
    message["From"], message["Subject"] = sender, subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    return message.as_bytes()


def fields(payloads: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(p) for p in payloads]


def test_named_groups_with_title_date_and_id_from_the_headers() -> None:
    raw = mail(Date="Sat, 28 Nov 2026 02:03:04 +0100", Message_ID="<a-7@sec.example>")
    rules = [rule(sender="guard@sec", body=r"on (?P<host>\S+) for user (?P<user>\w+)")]
    assert fields(payloads_for(raw, rules)) == [
        {
            "host": "pc-9",
            "user": "carol",
            "title": "Alert 7: ransomware on pc-9",
            "occurred_at": "2026-11-28T02:03:04+01:00",
            "id": "a-7@sec.example",
        }
    ]


def test_captured_fields_win_over_the_headers() -> None:
    raw = mail(Message_ID="<x@y>")
    rules = [rule(sender="GUARD@SEC", subject=r"Alert (?P<id>\d+): (?P<title>.+)")]
    (found,) = fields(payloads_for(raw, rules))
    assert found == {"id": "7", "title": "ransomware on pc-9"}  # sender is case-blind


def test_every_given_regex_must_match_and_the_first_rule_wins() -> None:
    raw = mail()
    assert payloads_for(raw, [rule(sender="other@sec")]) == []
    assert payloads_for(raw, [rule(sender="guard", subject="^Weekly")]) == []
    assert payloads_for(raw, [rule(sender="guard", body="nothing like this")]) == []
    first = rule(sender="guard", subject="(?P<title>Alert 7)")
    second = rule(sender="guard", subject="(?P<title>.+)")
    assert fields(payloads_for(raw, [first, second]))[0]["title"] == "Alert 7"


def test_html_bodies_are_read_without_tags() -> None:
    raw = mail(text=None, html="<p>Detected on <b>pc-9</b> for user&nbsp;<i>carol</i></p>")
    rules = [rule(sender="guard", body=r"on\s+(?P<host>\S+)\s+for user\W+(?P<user>\w+)")]
    (found,) = fields(payloads_for(raw, rules))
    assert (found["host"], found["user"]) == ("pc-9", "carol")


def test_json_attachments_are_handed_over_as_they_are() -> None:
    message = EmailMessage()
    message["From"], message["Subject"] = "noreply@saas.example", "2 alerts"
    message.set_content("attached")
    first, second = b'{"title": "one"}', b'[{"title": "two"}]'
    message.add_attachment(first, maintype="application", subtype="json", filename="a.json")
    message.add_attachment(
        second, maintype="application", subtype="octet-stream", filename="B.JSON"
    )
    message.add_attachment(
        b"MZ...", maintype="application", subtype="octet-stream", filename="x.exe"
    )
    attachments = rule(sender="saas", attachment_json=True)
    assert payloads_for(message.as_bytes(), [attachments]) == [first, second]
    # without any JSON attachment the rule does not match, so the mail stays put
    assert payloads_for(mail(sender="noreply@saas.example"), [attachments]) == []


def test_broken_headers_do_not_break_the_rule() -> None:
    raw = (
        b"From: guard@sec.example\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
        b"Date: yesterday\r\n\r\nhi\r\n"
    )
    (found,) = fields(payloads_for(raw, [rule(sender="guard")]))
    assert found == {"title": "café"}


@pytest.mark.parametrize(
    "value",
    [
        "not a mapping",
        {"subject": "x"},
        {"sender": ""},
        {"sender": "("},
        {"sender": "a", "body": "[z-a]"},
        {"sender": "a", "attachment_json": "yes"},
        {"sender": "a", "from": "b"},
    ],
)
def test_bad_rules_are_config_errors(value: Any) -> None:
    options = {"host": "imap", "username": "fido", "password_env": "PW", "rules": [value]}
    with pytest.raises(ConfigError, match=r"^source mail \(imap\): .*option 'rules\.0"):
        build(**options)


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("INBOX", '"INBOX"'),
        ('Fido/Processed "alerts"', '"Fido/Processed \\"alerts\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("R&D", '"R&-D"'),
        ("~peter/mail/台北/日本語", '"~peter/mail/&U,BTFw-/&ZeVnLIqe-"'),  # RFC 3501 §5.1.3
        ("Verarbeitet ✓", '"Verarbeitet &JxM-"'),
        ("x\r\nA1 DELETE INBOX", '"x&AA0ACg-A1 DELETE INBOX"'),  # no line break reaches the wire
    ],
)
def test_folder_names_are_quoted_modified_utf7(name: str, sent: str) -> None:
    assert mailbox_name(name) == sent


def test_imap_options_are_checked() -> None:
    good = {
        "host": "imap.corp.example",
        "username": "fido",
        "password_env": "PW",
        "rules": [{"sender": "x"}],
    }

    assert build(**good).port == 993 and build(**good, tls="starttls").port == 143
    for bad in (
        {**good, "tls": "yes"},
        {**good, "rules": []},
        {**good, "password_env": "UNSET"},
        {**good, "processed_folder": "INBOX"},
        {**good, "port": 0},
        {**good, "batch_size": "10"},
        {**good, "colour": "blue"},
        {key: value for key, value in good.items() if key != "host"},
    ):
        with pytest.raises(ConfigError):
            build(**bad)
