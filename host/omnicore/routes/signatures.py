"""Signed webhooks (specs/http-routes.md §4): GitHub's ``X-Hub-Signature-256`` and Stripe's
``Stripe-Signature``, checked in constant time against a secret of the secret store."""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["check_github", "check_stripe", "sign_github", "sign_stripe"]


def sign_github(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_stripe(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` value Stripe sends for ``body`` at ``timestamp``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def check_github(secret: bytes, body: bytes, header: str | None) -> str | None:
    """None when ``header`` signs ``body``; else why not."""
    if not header:
        return "missing X-Hub-Signature-256"
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not given:
        return "X-Hub-Signature-256 is not sha256=HEX"
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        return "bad signature"
    return None


def check_stripe(secret: bytes, body: bytes, header: str | None, tolerance_s: int,
                 now: float | None = None) -> tuple[str | None, int | None]:
    """``(None, timestamp)`` when ``header`` signs ``body`` within ``tolerance_s`` of now;
    else ``(why not, None)``."""
    if not header:
        return "missing Stripe-Signature", None
    stamp: int | None = None
    macs: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdecimal() and len(value) <= 12:
            stamp = int(value)
        elif key == "v1" and value:
            macs.append(value.strip().lower())
    if stamp is None or not macs:
        return "Stripe-Signature is not t=TIMESTAMP,v1=HEX", None
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        return f"the signature's timestamp is more than {tolerance_s} s away", None
    expected = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    ok = False
    for mac in macs[:8]:  # every one compared: no early exit on which one matched
        ok |= hmac.compare_digest(expected.encode(), mac.encode())
    return (None, stamp) if ok else ("bad signature", None)
