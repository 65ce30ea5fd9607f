"""Fixtures for the remote-source tests: a real Dovecot for the IMAP source."""

from tests.fixtures.dovecot import dovecot  # noqa: F401
