"""Signed payment notifications: HMAC-SHA256 over the timestamp and the raw body.

The provider sends ``Fanout-Signature: t=<unix seconds>,v1=<hex digest>``, where the digest is
``HMAC-SHA256(secret, "<t>." + body)``. Several ``v1`` entries may be given (one per secret
while the provider rotates); a notification is accepted when any of them matches any of the
configured secrets and ``t`` is within the tolerance of the receiver's clock, which bounds how
long a captured notification can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from gateway.errors import GatewayError

SIGNATURE_HEADER = "Fanout-Signature"
SCHEME = "v1"


class SignatureRejected(GatewayError):
    """A notification's signature is missing, malformed, stale or made with another secret."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{SIGNATURE_HEADER}: {reason}")


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """The hex digest of ``body`` sent at ``timestamp``, signed with ``secret``."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The header value a provider sends: one ``v1`` per secret."""
    digests = ",".join(f"{SCHEME}={signature(body, secret, timestamp)}" for secret in secrets)
    return f"t={timestamp},{digests}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` digests of a header; :class:`SignatureRejected` if it is
    not of the form ``t=<seconds>,v1=<hex>[,v1=<hex>...]``."""
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == SCHEME and value:
            digests.append(value)
    if timestamp is None:
        raise SignatureRejected("no timestamp (t=<unix seconds>)")
    if not digests:
        raise SignatureRejected(f"no {SCHEME} signature")
    return timestamp, digests


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance_seconds: int,
) -> int:
    """Check the notification ``body`` against its ``header``; return its timestamp.

    Every digest is compared with every secret's in constant time, so the time taken says
    nothing about how much of a forged digest was right.
    """
    if header is None:
        raise SignatureRejected("missing")
    timestamp, digests = parse_header(header)
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureRejected(
            f"timestamp {timestamp} is more than {tolerance_seconds} s from the server's clock"
        )
    expected = [signature(body, secret, timestamp) for secret in secrets]
    matched = False
    for digest in digests:
        for candidate in expected:
            matched |= hmac.compare_digest(digest.encode("ascii", "replace"), candidate.encode())
    if not matched:
        raise SignatureRejected("does not match the body with any configured secret")
    return timestamp
