"""How a webhook is signed, and how a receiver checks it.

Each POST carries these headers:

- ``X-Lookalike-Timestamp``: unix seconds when this attempt was sent;
- ``X-Lookalike-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the shared secret, of the
  bytes ``TIMESTAMP + "." + BODY`` (the body exactly as received, before any JSON parsing);
- ``X-Lookalike-Event``: the event's type (``flag.created``, ``flag.decided``, ``ping``);
- ``X-Lookalike-Delivery``: the event's id; the same on every retry and replay of it, so a
  receiver that has seen it already can answer 2xx and ignore it.

A receiver recomputes the HMAC, compares it in constant time, and refuses a timestamp more than
five minutes from its own clock: a captured request replayed later fails, and so does one whose
body or timestamp was changed. ``verify`` does all of this.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Mapping, Sequence

TOLERANCE_S = 300
TIMESTAMP = "X-Lookalike-Timestamp"
SIGNATURE = "X-Lookalike-Signature"
EVENT = "X-Lookalike-Event"
DELIVERY = "X-Lookalike-Delivery"
SCHEME = "v1"
MAX_TARGETS = 20


class SignatureError(ValueError):
    """A webhook request whose signature or timestamp does not check out."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Lookalike-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SCHEME}={digest.hexdigest()}"


def sign(secret: str, body: bytes, *, event: str, delivery: str, now: float | None = None) -> dict[str, str]:
    """The headers of one attempt to deliver ``body``."""
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature(secret, timestamp, body),
        EVENT: event,
        DELIVERY: delivery,
    }


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a received webhook; returns its timestamp.

    Args:
        secret: the shared secret (LOOKALIKE_WEBHOOK_SECRET of the sender).
        body: the request body exactly as received.
        headers: the request's headers (any letter case).

    Raises:
        SignatureError: a header missing, the signature wrong, or the timestamp too old or too new.
    """
    lower = {key.lower(): value for key, value in headers.items()}
    stamp, signed = lower.get(TIMESTAMP.lower(), ""), lower.get(SIGNATURE.lower(), "")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError(f"missing or malformed {TIMESTAMP} header")
    timestamp = int(stamp)
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is more than {tolerance_s:g} s from now: a replay?")
    expected = signature(secret, timestamp, body)
    # Several signatures may be sent while a secret is being rotated: any one matching will do.
    if not any(hmac.compare_digest(expected.encode(), part.strip().encode()) for part in signed.split(",")):
        raise SignatureError("the signature does not match the body (wrong secret, or the body was changed)")
    return timestamp


def check_targets(urls: Sequence[str], secret: str) -> tuple[str, ...]:
    """The configured URLs if they can be delivered to; ValueError says what is wrong."""
    if not urls:
        return ()
    if len(urls) > MAX_TARGETS:
        raise ValueError(f"LOOKALIKE_WEBHOOK_URLS lists {len(urls)} URLs; at most {MAX_TARGETS}.")
    if not secret:
        raise ValueError(
            "LOOKALIKE_WEBHOOK_URLS is set but LOOKALIKE_WEBHOOK_SECRET is not: webhooks are always signed."
        )
    for url in urls:
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError as exc:
            raise ValueError(f"LOOKALIKE_WEBHOOK_URLS: {url!r} is not a valid URL ({exc}).") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"LOOKALIKE_WEBHOOK_URLS: {url!r} is not an http(s) URL with a host.")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                f"LOOKALIKE_WEBHOOK_URLS: {url!r} carries a user name; the signature authenticates."
            )
        if parts.fragment:
            raise ValueError(f"LOOKALIKE_WEBHOOK_URLS: {url!r} has a #fragment, which is never sent.")
    return tuple(dict.fromkeys(urls))
