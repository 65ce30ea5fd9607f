"""Directory clients: Active Directory over LDAP."""

from integrations.directory.ad import ACCOUNTDISABLE, ActiveDirectory, ADConfig

__all__ = ["ACCOUNTDISABLE", "ADConfig", "ActiveDirectory"]
