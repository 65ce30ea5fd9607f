"""Fixtures for the log-file and SQL source tests: real ClamAV and fail2ban."""

from tests.fixtures.clamav import clamav  # noqa: F401
from tests.fixtures.fail2ban import fail2ban  # noqa: F401
