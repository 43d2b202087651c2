"""One backend decision: a database URI is a Milvus Lite file or a Milvus server, decided in one place."""

from __future__ import annotations

import pytest

from lookalike.backend import Backend
from lookalike.config import load_settings
from lookalike.store import is_server_uri


@pytest.mark.parametrize(
    ("uri", "backend"),
    [
        ("lookalike.db", Backend.LITE),
        ("/data/shop.db", Backend.LITE),
        ("~/a b/c.db", Backend.LITE),
        ("http://milvus:19530", Backend.SERVER),
        ("https://in01.example.zillizcloud.com", Backend.SERVER),
        ("tcp://10.0.0.5:19530", Backend.SERVER),
    ],
)
def test_a_uri_names_one_backend_everywhere(uri: str, backend: Backend) -> None:
    settings = load_settings(db=uri)
    assert Backend.of(uri) is backend and settings.backend is backend
    assert is_server_uri(uri) is (backend is Backend.SERVER)
    if backend is Backend.LITE:  # Lite: the workflow file and uploads sit beside the database
        assert settings.workflow_path().startswith(uri) and settings.uploads_path() == f"{uri}.uploads"
        assert settings.store_timeout_s(uri) == max(settings.timeout_s, settings.lite_timeout_s)
    else:  # a server: per-user files, the server's own timeout
        assert settings.workflow_path().startswith(settings.data_dir)
        assert settings.store_timeout_s(uri) == settings.timeout_s
