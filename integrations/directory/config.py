"""How Fido reaches an Active Directory domain: URL, bind account, TLS."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class ADConfig(BaseModel):
    """How to reach and bind to the directory. The password never appears in reprs.

    TLS: an ``ldaps://`` URL (port 636) or ``start_tls`` on ``ldap://`` (port 389). The
    DC's certificate is checked against ``ca_file`` (a PEM bundle; the system's CAs when
    unset) and must name the URL's host; ``verify_tls: false`` turns both checks off and
    is for labs only. Without either, the bind password crosses the network in clear.
    """

    model_config = ConfigDict(frozen=True)

    url: str
    bind_dn: str
    password: SecretStr
    base_dn: str
    start_tls: bool = False
    verify_tls: bool = True
    ca_file: Path | None = None
    timeout: float = Field(default=10.0, gt=0)
    page_size: int = Field(default=500, ge=1, le=1000)  # AD's MaxPageSize is 1000

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
