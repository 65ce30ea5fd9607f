"""Who may deliver to ``/webhooks/{detector}``: a bearer token (the detector's own, or
``FIDO_WEBHOOK_TOKEN``), optionally in a vendor's own header, and, where the vendor signs
its deliveries, an HMAC of the body checked in constant time; and how often: each token
has a bucket of the policy's ``webhook_rate`` (``RateLimiter``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import HTTPException
from pydantic import SecretStr
from starlette.datastructures import Headers

from pipeline.policy import SignatureRule, WebhookRate


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


class RateLimiter:
    """A token bucket per webhook token, in this replica's memory: ``rate().per_second``
    deliveries a second on average, ``burst`` at once. Past it, ``check`` raises a 429
    whose ``Retry-After`` says when the next delivery will be taken. ``rate`` is read at
    each delivery, so a reloaded policy applies at once; None means no limit. Several
    replicas each allow the rate (a load balancer spreads a detector over them)."""

    def __init__(
        self,
        rate: Callable[[], WebhookRate | None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[bytes, tuple[float, float]] = {}  # token digest → (level, at)

    def check(self, auth: DetectorAuth) -> None:
        rate = self.rate()
        if rate is None:
            return
        burst = float(rate.burst or max(1, math.ceil(rate.per_second)))
        secret = auth.token.get_secret_value() if auth.token else ""
        key = hashlib.sha256(secret.encode()).digest()  # the token itself is not kept here
        now = self.clock()
        level, at = self._buckets.get(key, (burst, now))
        level = min(burst, level + (now - at) * rate.per_second)
        if level < 1:
            self._buckets[key] = (level, now)
            wait = math.ceil((1 - level) / rate.per_second)
            raise HTTPException(
                429,
                f"more than {rate.per_second:g} deliveries a second with this token: "
                f"try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[key] = (level - 1, now)
