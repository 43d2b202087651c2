from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.server.harness import MilvusServer, server_command


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """One Milvus standalone for the test session, on a free loopback port."""
    if importlib.util.find_spec("milvus") is None or server_command() is None:
        pytest.skip("the PyPI package `milvus` (milvus-server) is not installed: pip install -e '.[dev]'")
    server = MilvusServer(tmp_path_factory.mktemp("milvus-server"))
    server.start()
    yield server
    server.stop()
