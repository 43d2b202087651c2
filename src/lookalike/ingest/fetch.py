"""Read an image's bytes from a local path or an http(s) URL, with a size cap and a timeout."""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import ImageError
from lookalike.ingest.sources import is_url


@dataclass(frozen=True)
class Fetched:
    data: bytes
    modified_at: int | None  # file mtime or HTTP Last-Modified, unix seconds


def fetch(uri: str, *, max_bytes: int, timeout_s: float) -> Fetched:
    """The bytes behind ``uri``.

    Raises:
        ImageError: missing, unreadable, too large, or the server said no.
    """
    if is_url(uri):
        return _fetch_url(uri, max_bytes=max_bytes, timeout_s=timeout_s)
    path = Path(uri)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(
                f"file too large: {size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:.0f} MB"
            )
        return Fetched(path.read_bytes(), int(path.stat().st_mtime))
    except FileNotFoundError as exc:
        raise ImageError("file not found") from exc
    except IsADirectoryError as exc:
        raise ImageError("is a directory") from exc
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc


def _fetch_url(url: str, *, max_bytes: int, timeout_s: float) -> Fetched:
    request = urllib.request.Request(url, headers={"User-Agent": "lookalike/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            data = response.read(max_bytes + 1)
            modified = response.headers.get("Last-Modified")
    except urllib.error.HTTPError as exc:
        raise ImageError(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageError(f"download failed: {reason}") from exc
    if len(data) > max_bytes:
        raise ImageError(f"download too large: over the limit of {max_bytes / 1e6:.0f} MB")
    modified_at = None
    if modified:
        try:
            modified_at = int(email.utils.parsedate_to_datetime(modified).timestamp())
        except (TypeError, ValueError):
            modified_at = None
    return Fetched(data, modified_at)


MAX_REDIRECTS = 5


def check_public_host(host: str, port: int) -> str:
    """Resolve ``host`` and return an address that is safe to connect to.

    Raises:
        ImageError: the name does not resolve, or any of its addresses is loopback, private,
            link-local, multicast, reserved or unspecified.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImageError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        # is_global is False for loopback, private, link-local, shared (CGNAT), reserved and
        # unspecified addresses; some multicast ranges count as global, so they are checked too.
        if not address.is_global or address.is_multicast:
            raise ImageError(
                f"refusing to fetch from {host}: it resolves to a non-public address ({address})"
            )
    return str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address checked beforehand, so DNS cannot change between check and connect."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch_public_url(url: str, *, max_bytes: int, timeout_s: float) -> Fetched:
    """Fetch an http(s) URL given by an untrusted caller.

    Every hop, redirects included, must resolve to public addresses only, and the
    connection goes to the address that was checked.

    Raises:
        ImageError: a non-http(s) scheme, a non-public address, an HTTP error, too large.
    """
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImageError(f"only http(s) URLs can be fetched, not {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = check_public_host(parts.hostname, port)
        kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
        connection = kind(parts.hostname, port, address, timeout_s)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("GET", path, headers={"User-Agent": "lookalike/0.1", "Host": parts.netloc})
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urllib.parse.urljoin(url, response.getheader("Location", ""))
                continue
            if response.status >= 400:
                raise ImageError(f"HTTP {response.status} {response.reason}")
            data = response.read(max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise ImageError(f"download failed: {exc}") from exc
        finally:
            connection.close()
        if len(data) > max_bytes:
            raise ImageError(f"download too large: over the limit of {max_bytes / 1e6:.0f} MB")
        return Fetched(data, None)
    raise ImageError(f"too many redirects (over {MAX_REDIRECTS})")
