"""Milvus storage: the only package that imports pymilvus."""

from __future__ import annotations

from lookalike.store.filters import build_filter, quote
from lookalike.store.milvus import MilvusStore, is_server_uri
from lookalike.store.models import CollectionInfo, Hit, IndexType, Item, PartitionStats
from lookalike.store.partitions import partition_for, partitions_before, partitions_between

__all__ = [
    "CollectionInfo",
    "Hit",
    "IndexType",
    "Item",
    "MilvusStore",
    "PartitionStats",
    "build_filter",
    "is_server_uri",
    "partition_for",
    "partitions_before",
    "partitions_between",
    "quote",
]
