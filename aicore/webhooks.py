"""Signing of AI Core webhooks, for the sender and for receivers.

Every delivery is a POST with a JSON body and these headers:

    X-AICore-Event:      job.completed | job.failed | job.cancelled | job.timeout
    X-AICore-Delivery:   the delivery id (the same on every retry of one delivery: deduplicate on it)
    X-AICore-Timestamp:  Unix seconds when this attempt was signed
    X-AICore-Signature:  v1=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>

A receiver recomputes the HMAC over the raw body bytes, compares in constant time, and refuses timestamps
older than a few minutes (a captured request cannot be replayed later).
"""

import hashlib
import hmac
import time

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str,
    *,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `signature` is ours for this body and timestamp, and the timestamp is recent."""
    try:
        signed_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - signed_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, signed_at, body), signature)
