"""Settings, from the environment and ``.env`` (pydantic-settings).

Secrets are ``SecretStr``: their values never appear in logs, reprs or error messages.
``.env.example`` lists every field here; a test keeps the two in step. The settings of one
integration live beside its code (the directory's ``FIDO_AD_*``:
``integrations/directory/config.py``); secrets a plugin needs are named in the policy.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import ConfigError


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
    )

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{Path.cwd() / 'fido.db'}",
        validation_alias=_env("FIDO_DATABASE_URL"),
    )
    config: Path | None = Field(default=None, validation_alias=_env("FIDO_CONFIG"))
    http_host: str = Field(default="127.0.0.1", validation_alias=_env("FIDO_HTTP_HOST"))
    http_port: int = Field(default=8080, ge=0, le=65535, validation_alias=_env("FIDO_HTTP_PORT"))
    webhook_token: SecretStr | None = Field(
        default=None, validation_alias=_env("FIDO_WEBHOOK_TOKEN")
    )
    approvers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("FIDO_APPROVERS")
    )
    slack_channel: str | None = Field(default=None, validation_alias=_env("FIDO_SLACK_CHANNEL"))
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_BOT_TOKEN")
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_APP_TOKEN")
    )
    slack_api_url: str | None = Field(default=None, validation_alias=_env("SLACK_API_URL"))
    # messages per second per channel: Slack's documented limit for chat.postMessage is 1;
    # raise it only for a Slack-compatible endpoint without that limit (a test double)
    slack_messages_per_second: float = Field(
        default=1.0, gt=0, validation_alias=_env("FIDO_SLACK_MESSAGES_PER_SECOND")
    )
    log_level: str = Field(default="INFO", validation_alias=_env("FIDO_LOG_LEVEL"))
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias=_env("FIDO_LOG_FORMAT")
    )
    # this process's name among replicas: its unfinished claims are released when a process
    # of the same name starts (keep it stable across restarts: a StatefulSet pod name)
    replica: str = Field(
        default_factory=socket.gethostname, max_length=128, validation_alias=_env("FIDO_REPLICA")
    )

    @field_validator("approvers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("replica", mode="after")
    @classmethod
    def _replica(cls, value: str) -> str:
        return value.strip() or socket.gethostname()

    @field_validator("slack_api_url", mode="after")
    @classmethod
    def _slash(cls, value: str | None) -> str | None:
        if value and not value.endswith("/"):
            value += "/"
        return value or None

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the first of ``names`` (environment names) unset."""
        for env_name in names:
            field = _FIELD_BY_ENV[env_name]
            value = getattr(self, field)
            if (
                value is None
                or value == ""
                or (isinstance(value, SecretStr) and not value.get_secret_value())
            ):
                raise ConfigError(f"{env_name} is not set (see .env.example)")


_FIELD_BY_ENV: dict[str, str] = {
    alias: name
    for name, info in Settings.model_fields.items()
    if isinstance(info.validation_alias, AliasChoices)
    for alias in info.validation_alias.choices
    if isinstance(alias, str)
}
ENV_NAMES: list[str] = sorted(_FIELD_BY_ENV)

# what ``fido serve`` cannot run without (and SLACK_SIGNING_SECRET unless SLACK_APP_TOKEN
# is set); the directory's required settings while a plugin uses it (the built-in policy
# does) — named here for help screens, checked in ``bot/doctor_settings.py``
SERVE_REQUIRED = ("FIDO_WEBHOOK_TOKEN", "SLACK_BOT_TOKEN", "FIDO_SLACK_CHANNEL")
AD_REQUIRED = ("FIDO_AD_URL", "FIDO_AD_BIND_DN", "FIDO_AD_PASSWORD", "FIDO_AD_BASE_DN")
