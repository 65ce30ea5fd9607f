"""How Fido reaches an Active Directory domain: URL, bind account, TLS.

The settings are ``FIDO_AD_*`` environment variables (or ``.env``), read by ``ADConfig``;
``.env.example`` lists every one (a test keeps the two in step). Plugins get the one shared
client from ``Context.directory()`` (``integrations/directory/__init__.py``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "FIDO_AD_"

# set while ``from_environ`` builds a config: only the values given count, not the process
# environment or .env (a context's environment is the whole truth)
_GIVEN_ONLY: ContextVar[bool] = ContextVar("_GIVEN_ONLY", default=False)


class ADConfig(BaseSettings):
    """How to reach and bind to the directory. The password never appears in reprs.

    TLS: an ``ldaps://`` URL (port 636) or ``start_tls`` on ``ldap://`` (port 389). The
    DC's certificate is checked against ``ca_file`` (a PEM bundle; the system's CAs when
    unset) and must name the URL's host; ``verify_tls: false`` turns both checks off and
    is for labs only. Without either, the bind password crosses the network in clear.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    url: str  # FIDO_AD_URL
    bind_dn: str  # FIDO_AD_BIND_DN
    password: SecretStr  # FIDO_AD_PASSWORD
    base_dn: str  # FIDO_AD_BASE_DN
    start_tls: bool = False  # FIDO_AD_START_TLS
    verify_tls: bool = True  # FIDO_AD_VERIFY_TLS
    ca_file: Path | None = None  # FIDO_AD_CA_FILE
    timeout: float = Field(default=10.0, gt=0)  # FIDO_AD_TIMEOUT
    page_size: int = Field(default=500, ge=1, le=1000)  # FIDO_AD_PAGE_SIZE (AD's max: 1000)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _GIVEN_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ADConfig:
        """The settings in ``environ`` (and nowhere else); ConfigError naming every
        ``FIDO_AD_*`` variable missing or wrong at once."""
        values: dict[str, Any] = {
            field: environ[env]
            for field in cls.model_fields
            if (env := env_name(field)) in environ and environ[env] != ""
        }
        with _given_only():
            try:
                return cls(**values)
            except ValidationError as exc:
                raise ConfigError(_describe(exc)) from None

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError("must be an ldap:// or ldaps:// URL with a host")
        return value

    @field_validator("ca_file")
    @classmethod
    def _pem_bundle(cls, value: Path | None) -> Path | None:
        """Fail at start-up, not at the first alert, when the CA file is missing or junk."""
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"{value} is not a readable PEM CA bundle ({exc})") from None
        return value

    @model_validator(mode="after")
    def _tls_once(self) -> ADConfig:
        if self.start_tls and self.scheme == "ldaps":
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is already encrypted")
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (636 if self.scheme == "ldaps" else 389)

    @property
    def uses_tls(self) -> bool:
        return self.scheme == "ldaps" or self.start_tls

    def warn_if_clear(self) -> None:
        """Log a warning when the bind password would cross the network unencrypted."""
        if self.scheme == "ldap" and not self.start_tls:
            log.warning(
                "FIDO_AD_URL is plain ldap:// without FIDO_AD_START_TLS: the bind password "
                "crosses the network unencrypted"
            )


def env_name(field: str) -> str:
    """The environment variable of an ``ADConfig`` field: ``url`` → ``FIDO_AD_URL``."""
    return ENV_PREFIX + field.upper()


ENV_NAMES: list[str] = sorted(env_name(field) for field in ADConfig.model_fields)


@contextmanager
def _given_only() -> Iterator[None]:
    token = _GIVEN_ONLY.set(True)
    try:
        yield
    finally:
        _GIVEN_ONLY.reset(token)


def _describe(exc: ValidationError) -> str:
    missing: list[str] = []
    wrong: list[str] = []
    for error in exc.errors():
        loc: tuple[Any, ...] = tuple(error["loc"])
        name = env_name(str(loc[0])) if loc else f"{ENV_PREFIX}*"
        if error["type"] == "missing":
            missing.append(name)
        else:
            wrong.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    parts = []
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        parts.append(f"{', '.join(missing)} {verb} not set (see .env.example)")
    return "; ".join(parts + wrong)
