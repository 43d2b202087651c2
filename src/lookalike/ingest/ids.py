"""Stable primary keys: the same (source, item, bytes, crop) always maps to the same INT64."""

from __future__ import annotations

import hashlib


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_id(source: str, key: str, sha256: str, crop: int = 0) -> int:
    """A positive 63-bit id; two sellers listing the same bytes get two ids."""
    digest = hashlib.blake2b(
        "\x1f".join((source, key, sha256, str(crop))).encode("utf-8", "surrogateescape"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF
