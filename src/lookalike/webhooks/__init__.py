"""Webhooks: every flag raised and every review decision POSTed to the shop, signed, retried, replayable.

- ``signing``: the signature scheme (HMAC-SHA256 over ``timestamp.body``) and ``verify`` for receivers;
- ``post``: one delivery attempt over HTTP (address checked and pinned, no redirects, capped answer);
- ``worker``: the loop that delivers what the outbox holds (``lookalike serve`` runs one).

Events are written to the workflow database's outbox in the same transaction as the change they
describe (workflow/outbox.py), so a delivery can neither block nor fail the write that caused it.
"""

from __future__ import annotations

from lookalike.webhooks.signing import SignatureError, sign, verify

__all__ = ["SignatureError", "sign", "verify"]
