"""Where a database lives: the one place that tells a Milvus Lite file from a Milvus server.

A leaf module like ``errors.py``: config, the store and the use cases all ask ``Backend.of(uri)``.
"""

from __future__ import annotations

from enum import StrEnum


class Backend(StrEnum):
    """A Milvus Lite file (a path), or a Milvus server (``http(s)://``, ``tcp://``, ``unix://``...)."""

    LITE = "lite"
    SERVER = "server"

    @classmethod
    def of(cls, uri: str) -> Backend:
        return cls.SERVER if "://" in uri else cls.LITE
