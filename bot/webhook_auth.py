"""Who may deliver to ``/webhooks/{detector}``: a bearer token (the detector's own, or
``FIDO_WEBHOOK_TOKEN``), optionally in a vendor's own header, and, where the vendor signs
its deliveries, an HMAC of the body checked in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import HTTPException
from pydantic import SecretStr
from starlette.datastructures import Headers

from pipeline.policy import SignatureRule


@dataclass(frozen=True)
class Signature:
    rule: SignatureRule
    secret: SecretStr


@dataclass(frozen=True)
class DetectorAuth:
    token: SecretStr | None
    token_header: str | None = None  # e.g. "X-Api-Key"; else "Authorization: Bearer …"
    signature: Signature | None = None


def _refuse(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def check_token(headers: Headers, auth: DetectorAuth) -> None:
    expected = auth.token.get_secret_value().encode() if auth.token else b""
    if auth.token_header:
        presented = headers.get(auth.token_header, "")
    else:
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            presented = ""
    if not expected or not hmac.compare_digest(presented.strip().encode(), expected):
        raise _refuse("missing or invalid bearer token")


def check_signature(
    headers: Headers, body: bytes, signature: Signature, *, now: Callable[[], float] = time.time
) -> None:
    rule = signature.rule
    presented = headers.get(rule.header, "").strip()
    if rule.prefix:
        if not presented.startswith(rule.prefix):
            raise _refuse("missing or invalid signature")
        presented = presented[len(rule.prefix) :]
    message = body
    if rule.timestamp_header:
        stamp = headers.get(rule.timestamp_header, "").strip()
        # whole seconds in ASCII digits only: float() would take "nan", which compares
        # false with every bound and so passed the replay window, and "inf"; and no more
        # digits than a time has (int() refuses over 4,300)
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise _refuse("missing or invalid signature timestamp")
        if abs(now() - int(stamp)) > rule.max_skew_seconds:
            raise _refuse("signature timestamp is too old or too far ahead")
        message = stamp.encode() + rule.separator.encode() + body
    digest = hmac.new(
        signature.secret.get_secret_value().encode(), message, getattr(hashlib, rule.algorithm)
    ).digest()
    if rule.encoding == "hex":
        expected = digest.hex().encode()
        presented_bytes = presented.lower().encode()
    else:
        expected = base64.b64encode(digest)
        presented_bytes = presented.encode()
    if not presented or not hmac.compare_digest(presented_bytes, expected):
        raise _refuse("missing or invalid signature")


def authenticate(
    headers: Headers, detector: str, auth: Mapping[str, DetectorAuth], default: DetectorAuth
) -> DetectorAuth:
    """Check the token for ``detector`` (unknown detectors are checked against the
    default token, so their names cannot be probed without it)."""
    rules = auth.get(detector, default)
    check_token(headers, rules)
    return rules
