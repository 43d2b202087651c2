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


class Refusing:
    """A client whose connection fails the way pymilvus reports a refusal: MilvusException caused by gRPC."""

    calls = 0
    details = ""
    code: Any = None

    def __init__(self, **_: Any) -> None:
        import grpc
        from pymilvus.exceptions import MilvusException

        Refusing.calls += 1

        class Cause(grpc.RpcError):
            def code(self) -> Any:
                return Refusing.code

            def details(self) -> str:
                return Refusing.details

        try:
            raise Cause()
        except Cause as cause:
            raise MilvusException(code=2, message="Fail connecting to server") from cause


@pytest.mark.parametrize(
    ("status", "details", "retried"),
    [
        ("UNAVAILABLE", "failed to connect to all addresses; connection refused", True),
        ("DEADLINE_EXCEEDED", "Deadline Exceeded", True),
        ("UNAVAILABLE", "Tls handshake failed (TSI_PROTOCOL_FAILURE)", False),
        ("UNAUTHENTICATED", "auth check failure, please check username and password", False),
        ("PERMISSION_DENIED", "permission denied", False),
        ("UNAVAILABLE", "Failed parsing HTTP/2", False),
    ],
)
def test_only_errors_that_can_pass_are_retried(status: str, details: str, retried: bool) -> None:
    import grpc

    Refusing.calls, Refusing.details, Refusing.code = 0, details, getattr(grpc.StatusCode, status)
    with pytest.raises(StoreError, match="Cannot open the Milvus database"):
        ServerStore("http://h:19530", "images", timeout_s=4)._connect(Refusing)
    assert (Refusing.calls > 1) is retried
