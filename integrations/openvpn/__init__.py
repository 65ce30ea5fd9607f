"""OpenVPN: a client for the server's management interface, and a guard that keeps blocked
common names from reconnecting. The responder is ``integrations/responders/
openvpn_kill_session.py``; set-up and trade-offs are in ``docs/responders/openvpn.md``."""

from integrations.openvpn.guard import SessionGuard
from integrations.openvpn.management import (
    ClientSession,
    InvalidCommonName,
    ManagementBusy,
    ManagementClient,
    ManagementEndpoint,
    ManagementError,
    end_sessions,
    parse_status,
    validate_common_name,
)

__all__ = [
    "ClientSession",
    "InvalidCommonName",
    "ManagementBusy",
    "ManagementClient",
    "ManagementEndpoint",
    "ManagementError",
    "SessionGuard",
    "end_sessions",
    "parse_status",
    "validate_common_name",
]
