"""Directory clients: Active Directory over LDAP."""

from integrations.directory.ad import ACCOUNTDISABLE, ActiveDirectory, ADConfig
from integrations.directory.records import Group, UserDetails

__all__ = ["ACCOUNTDISABLE", "ADConfig", "ActiveDirectory", "Group", "UserDetails"]
