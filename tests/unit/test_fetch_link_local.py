"""Allowing private networks never opens link-local and cloud metadata addresses, directly or by a
redirect; only a network listed in LOOKALIKE_ALLOW_NETWORKS does. Nothing leaves the machine: names
resolve from a table here, and every connection is recorded and refused unless it is to loopback."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lookalike.config import load_settings
from lookalike.errors import ImageError
from lookalike.ingest.policy import FetchPolicy

NAMES = {"metadata.google.internal": "169.254.169.254", "intranet.example": "10.1.2.3"}
METADATA = [
    "169.254.169.254",  # AWS, GCP, Azure, OCI, OpenStack
    "169.254.170.2",  # AWS ECS task metadata
    "[fe80::1]",
    "[fd00:ec2::254]",  # AWS over IPv6
    "[fd20:ce::254]",  # GCP over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud
    "168.63.129.16",  # Azure WireServer (a public address)
    "[::ffff:169.254.169.254]",  # the same, written inside IPv6
    "[::ffff:a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64
    "[2002:a9fe:a9fe::1]",  # 6to4
    "2852039166",  # 169.254.169.254 as one decimal number
    "0xa9fea9fe",
    "169.254.43518",
    "metadata.google.internal",
]


class Net:
    """Resolves names from NAMES and numeric hosts only (never DNS); records every connection and
    lets only those to loopback through."""

    def __init__(self) -> None:
        self.attempted: list[tuple[str, int]] = []
        self._getaddrinfo = socket.getaddrinfo
        self._connect = socket.socket.connect

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0, *args: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        numeric = NAMES.get(name, name)
        return self._getaddrinfo(numeric, port, family, type, 0, socket.AI_NUMERICHOST)

    def connect(self, sock: socket.socket, address: Any) -> None:
        host, port = str(address[0]), int(address[1])
        if ipaddress.ip_address(host.split("%")[0]).is_loopback:
            self._connect(sock, address)
            return
        self.attempted.append((host, port))
        raise ConnectionRefusedError(f"test: no connection leaves the machine ({host})")


@pytest.fixture()
def net(monkeypatch: pytest.MonkeyPatch) -> Net:
    fake = Net()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: fake.connect(sock, address))
    return fake


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(302)
        self.send_header("Location", "http://" + self.path.lstrip("/"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def redirector() -> Iterator[str]:
    """A loopback host that redirects /HOST/PATH to http://HOST/PATH."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


PRIVATE = FetchPolicy(max_bytes=1_000_000, timeout_s=5, allow_private=True)


@pytest.mark.parametrize("host", METADATA)
def test_allowing_private_networks_leaves_metadata_and_link_local_refused(net: Net, host: str) -> None:
    with pytest.raises(ImageError, match="link-local or cloud metadata address.*LOOKALIKE_ALLOW_NETWORKS"):
        PRIVATE.read(f"http://{host}/latest/meta-data/iam/security-credentials/")
    assert net.attempted == []


@pytest.mark.parametrize("host", ["169.254.169.254", "[fd00:ec2::254]", "metadata.google.internal"])
def test_a_redirect_to_metadata_is_refused_before_its_connection(net: Net, host: str) -> None:
    with redirector() as base, pytest.raises(ImageError, match="link-local or cloud metadata"):
        PRIVATE.read(f"{base}/{host}/computeMetadata/v1/")
    assert net.attempted == []  # the loopback hop was made, the redirect's never


def test_private_addresses_still_open_with_the_opt_in_and_only_with_it(net: Net) -> None:
    with pytest.raises(ImageError, match="non-public address.*LOOKALIKE_ALLOW_PRIVATE_URLS"):
        FetchPolicy(timeout_s=5).read("http://intranet.example/a.jpg")
    assert net.attempted == []
    with pytest.raises(ImageError, match="download failed"):  # refused by the test's net, not the policy
        PRIVATE.read("http://intranet.example/a.jpg")
    assert net.attempted == [("10.1.2.3", 80)]


def test_a_listed_network_is_the_only_way_to_a_metadata_address(net: Net) -> None:
    settings = load_settings(allow_private_urls=False, allow_networks="169.254.169.254/32, fd00:ec2::/32")
    listed = FetchPolicy.from_settings(settings, server=True)
    for url in ("http://169.254.169.254/latest/", "http://[fd00:ec2::254]/latest/"):
        with pytest.raises(ImageError, match="download failed"):
            listed.read(url)
    assert [host for host, _ in net.attempted] == ["169.254.169.254", "fd00:ec2::254"]
    with pytest.raises(ImageError, match="link-local"):  # the rest of link-local stays closed
        listed.read("http://169.254.170.2/v2/credentials")
    with pytest.raises(ImageError, match="non-public"):  # listing one network allows no other
        listed.read("http://10.1.2.3/")
    assert len(net.attempted) == 2


def test_a_network_that_does_not_parse_is_refused_when_settings_are_read() -> None:
    with pytest.raises(ValueError, match="allow_networks"):
        load_settings(allow_networks="169.254.169.254/16")  # host bits set: a typo, not a network
    with pytest.raises(ValueError, match="allow_networks"):
        load_settings(allow_networks="metadata")


def test_the_api_refuses_metadata_urls_with_private_networks_allowed(net: Net, tmp_path: Path) -> None:
    from lookalike.api import create_app
    from lookalike.usecases import Context
    from tests.helpers import FakeEmbedder

    settings = load_settings(db=str(tmp_path / "meta.db"), allow_private_urls=True, fetch_timeout_s=5)
    with redirector() as base, TestClient(create_app(Context(settings, embedder=FakeEmbedder()))) as api:
        for url in ("http://169.254.169.254/latest/meta-data/", f"{base}/169.254.169.254/latest/meta-data/"):
            answer = api.post("/search", json={"image_url": url})
            assert answer.status_code == 422 and "metadata" in answer.json()["detail"], answer.text
            job = api.post("/index", json={"inputs": [url]})
            assert job.status_code == 202
    assert net.attempted == []
