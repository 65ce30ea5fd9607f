"""Fido's one exception tree.

    FidoError                 anything Fido raises on purpose
    ├── ConfigError           a setting or the policy is missing or wrong (stops start-up)
    ├── InputError            input from outside is bad: a payload, a command, a button
    │   └── ParseError        a detector payload that cannot be turned into events
    ├── IntegrationError      another system failed: directory, HTTP API, database
    │   ├── NotFoundError     the other system answered, and the thing is not there
    │   ├── RateLimited       the other system said "too many requests" (429)
    │   └── DeliveryError     a message (a Slack card) could not be delivered yet, or ever
    └── ResponderError        a containment action failed or was refused
        └── NotAuthorized     the person asking may not do this

The bot turns each into a clear message (an HTTP status with a reason, or an ephemeral Slack
reply); nothing else should catch them broadly.
"""

from __future__ import annotations


class FidoError(Exception):
    """Base of every error Fido raises on purpose."""


class ConfigError(FidoError):
    """A setting or the policy is missing or invalid."""


class InputError(FidoError):
    """Input from outside Fido is invalid."""


class ParseError(InputError):
    """A detector payload cannot be turned into events."""


class IntegrationError(FidoError):
    """Another system (directory, API, database) failed."""


class NotFoundError(IntegrationError):
    """The other system answered, and the object asked for does not exist."""


class RateLimited(IntegrationError):
    """The other system refused for now; ``retry_after`` seconds if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryError(IntegrationError):
    """A message could not be delivered. ``retry_after``: the service asked us to wait this
    many seconds (e.g. Slack's 429); ``permanent``: retrying cannot help until someone fixes
    something (a missing channel, a revoked token)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class ResponderError(FidoError):
    """A containment action failed or was refused."""


class NotAuthorized(ResponderError):
    """The person asking is not allowed to do this."""
