"""Directory clients: Active Directory over LDAP.

Importing this package installs how ``Context.directory()`` builds the shared client: from
the ``FIDO_AD_*`` settings in the context's environment (``config.ADConfig``).
"""

from integrations.directory.ad import ACCOUNTDISABLE, ActiveDirectory, ADConfig
from integrations.directory.records import Group, UserDetails
from pipeline.plugins import Context, provide_directory

__all__ = ["ACCOUNTDISABLE", "ADConfig", "ActiveDirectory", "Group", "UserDetails", "directory_for"]


def directory_for(context: Context) -> ActiveDirectory:
    """The client for the ``FIDO_AD_*`` settings in ``context.environ``; ConfigError
    naming every one missing or wrong. Warns when the password would cross in clear."""
    config = ADConfig.from_environ(context.environ)
    config.warn_if_clear()
    return ActiveDirectory(config)


provide_directory(directory_for)
