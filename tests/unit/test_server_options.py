"""Server options reach pymilvus: credentials, TLS, and retries while a server starts."""

from __future__ import annotations

from typing import Any

import pytest

from lookalike.config import load_settings
from lookalike.errors import StoreError
from lookalike.store import ServerStore


class Recorder:
    """Stands in for pymilvus' MilvusClient: records its arguments, fails the first ``failures`` times."""

    calls: list[dict[str, Any]] = []
    failures = 0

    def __init__(self, **kwargs: Any) -> None:
        Recorder.calls.append(kwargs)
        if len(Recorder.calls) <= Recorder.failures:
            raise ConnectionError("connection refused")


def _connect(store: ServerStore, failures: int = 0) -> list[dict[str, Any]]:
    Recorder.calls, Recorder.failures = [], failures
    store._connect(Recorder)
    return Recorder.calls


def test_tls_and_credentials_from_settings_reach_the_client() -> None:
    settings = load_settings(
        user="analyst", password="s3cret", tls_server_pem="/certs/server.pem", tls_server_name="milvus.shop"
    )
    assert settings.tls() == {
        "server_pem_path": "/certs/server.pem",
        "server_name": "milvus.shop",
        "secure": "true",
    }
    store = ServerStore(
        "https://milvus.shop:19530", "images", user="analyst", password="s3cret", tls=settings.tls()
    )
    (call,) = _connect(store)
    assert call["uri"] == "https://milvus.shop:19530" and call["token"] == "analyst:s3cret"
    assert call["secure"] is True and call["server_pem_path"] == "/certs/server.pem"
    assert call["server_name"] == "milvus.shop" and call["timeout"] == 30.0


def test_two_way_tls_passes_every_file() -> None:
    tls = load_settings(tls_ca_pem="ca.pem", tls_client_pem="client.pem", tls_client_key="client.key").tls()
    (call,) = _connect(ServerStore("http://h:19530", "images", tls=tls))
    assert (call["ca_pem_path"], call["client_pem_path"], call["client_key_path"]) == (
        "ca.pem",
        "client.pem",
        "client.key",
    )


def test_a_server_that_is_still_starting_is_retried() -> None:
    calls = _connect(ServerStore("http://h:19530", "images", timeout_s=10), failures=2)
    assert len(calls) == 3


def test_a_server_that_never_answers_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="Cannot open the Milvus database at http://h:19530"):
        _connect(ServerStore("http://h:19530", "images", timeout_s=1), failures=100)


def test_no_tls_settings_means_no_tls_arguments() -> None:
    (call,) = _connect(ServerStore("http://h:19530", "images", tls=load_settings().tls()))
    assert not {"secure", "server_pem_path", "ca_pem_path"} & set(call)
