"""Milvus storage: the only package that imports pymilvus.

``open_store`` gives a ``LiteStore`` for a ``.db`` path (embedded Milvus Lite, read through its
derived read index) and a ``ServerStore`` for a ``http(s)://`` URI; both follow ``Store``. A Lite
collection has one store per process: every ``open_store`` of it hands back the same one.
"""

from __future__ import annotations

import os

from lookalike.store.base import lite_path
from lookalike.store.filters import build_filter, quote
from lookalike.store.lite import LiteStore
from lookalike.store.liteprocess import shared
from lookalike.store.milvus import is_server_uri
from lookalike.store.models import CollectionInfo, Hit, IndexType, Item, PartitionStats
from lookalike.store.partitions import partition_for, partitions_before
from lookalike.store.protocol import Store
from lookalike.store.readindex import DEFAULT_RECALL
from lookalike.store.server import ServerStore
from lookalike.store.window import Window


def open_store(
    uri: str,
    collection: str,
    *,
    token: str = "",
    user: str = "",
    password: str = "",
    timeout_s: float = 30.0,
    tls: dict[str, str] | None = None,
    read_files: bool = False,
    recall: float = DEFAULT_RECALL,
) -> LiteStore | ServerStore:
    """The store for a Milvus Lite path or a Milvus server URI (nothing is opened yet).

    Milvus Lite lets one process hold a database, and its read index has one owner: every caller
    in this process that opens the same Lite database and collection (the command, the server,
    its jobs) gets the same ``LiteStore``, and each ``close()`` lets go of it once; the last one
    closes it. ``read_files``: a Lite store made now reads Milvus Lite's files until the first write
    or doubt instead of starting it (``LiteStore``); for a process with no other client of the database.
    ``recall``: the recall@10 a Lite store's searches promise (``ReadIndex``); a server's index is its own.
    """
    if is_server_uri(uri):
        return ServerStore(
            uri, collection, token=token, user=user, password=password, timeout_s=timeout_s, tls=tls
        )
    if not uri.endswith(".db"):
        return LiteStore(uri, collection, timeout_s=timeout_s)  # refuses it, with the reason
    key = (os.path.abspath(lite_path(uri)), collection)
    return shared(
        key, lambda: LiteStore(uri, collection, timeout_s=timeout_s, read_files=read_files, recall=recall)
    )


__all__ = [
    "CollectionInfo",
    "Hit",
    "IndexType",
    "Item",
    "LiteStore",
    "PartitionStats",
    "ServerStore",
    "Store",
    "build_filter",
    "is_server_uri",
    "open_store",
    "partition_for",
    "partitions_before",
    "Window",
    "quote",
]
