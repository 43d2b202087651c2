"""Milvus constants and small helpers the stores share: index types, properties, errors, logging."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lookalike.backend import Backend
from lookalike.errors import ConfigError, StoreError
from lookalike.store.models import IndexType

MODEL_PROPERTY = "lookalike.model"
INDEX_PROPERTY = "lookalike.index"
"""On Milvus Lite, the index asked for (the read index builds it; Milvus itself keeps none)."""
MAX_K = 16384

LITE_INDEXES = (IndexType.FLAT, IndexType.IVF_FLAT, IndexType.IVF_SQ8, IndexType.HNSW)
SERVER_INDEXES = tuple(IndexType)

DEFAULT_BUILD_PARAMS: dict[IndexType, dict[str, Any]] = {
    IndexType.FLAT: {},
    IndexType.IVF_FLAT: {"nlist": 1024},
    IndexType.IVF_SQ8: {"nlist": 1024},
    IndexType.IVF_PQ: {"nlist": 1024, "m": 16},
    IndexType.HNSW: {"M": 16, "efConstruction": 100},
}


def is_server_uri(uri: str) -> bool:
    return Backend.of(uri) is Backend.SERVER


@contextmanager
def milvus_errors(action: str) -> Iterator[None]:
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise StoreError(f"Milvus could not {action}: {getattr(exc, 'message', exc)}") from exc


def check_collection_name(collection: str) -> None:
    if not collection or not collection.replace("_", "a").isalnum() or collection[0].isdigit():
        raise ConfigError(
            f"Invalid collection name {collection!r}: use letters, digits and underscores, "
            "starting with a letter."
        )


def quiet_pymilvus() -> None:
    # gRPC's C core logs keepalive renegotiations (GOAWAY too_many_pings) with Milvus Lite's
    # in-process server straight to stderr; they are not errors.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # pymilvus logs every failed RPC with a traceback; the store raises one clear error instead.
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be between 1 and {MAX_K}, got {k}.")


MAX_PER_ITEM = 100
"""Hits per product a grouped search shows at most (a product's gallery, not its whole catalog)."""


def check_per_item(per_item: int) -> None:
    if isinstance(per_item, bool) or not isinstance(per_item, int) or not 1 <= per_item <= MAX_PER_ITEM:
        raise ConfigError(f"per_item must be between 1 and {MAX_PER_ITEM}, got {per_item}.")
