"""Download an http(s) URL under the fetch policy: checked addresses, one deadline, one byte cap.

Every hop (redirects included) is resolved, checked, and connected to the address that was
checked, so DNS cannot change between the check and the connection. The deadline covers the
whole download (connect, headers, body, every redirect): a watchdog shuts the socket when it
passes, so a server that drips one byte a second is cut off. The byte cap is counted while
reading, whatever Content-Length says.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

from lookalike.errors import ImageError

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
USER_AGENT = "lookalike/0.1"
PRIVATE_HINT = "set LOOKALIKE_ALLOW_PRIVATE_URLS=1 to allow private addresses"
LISTED_HINT = "list its network in LOOKALIKE_ALLOW_NETWORKS to allow it"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Never fetched, not even with LOOKALIKE_ALLOW_PRIVATE_URLS, unless a network listed in
# LOOKALIKE_ALLOW_NETWORKS holds the address: link-local ranges and the cloud instance-metadata
# services, the first target of any request forgery.
NEVER_UNLESS_LISTED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OCI, OpenStack metadata at 169.254.169.254
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::/32",  # AWS instance services over IPv6: metadata fd00:ec2::254, DNS, time
        "fd20:ce::254/128",  # GCP metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",  # Oracle Cloud metadata (older instances)
        "168.63.129.16/32",  # Azure WireServer
    )
)
# IPv6 ranges that carry an IPv4 address inside: the embedded address is checked too.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


@dataclass(frozen=True)
class Fetched:
    data: bytes
    modified_at: int | None  # file mtime or HTTP Last-Modified, unix seconds


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    value = int(address)
    if value >> 32 == 0 and value > 1:  # IPv4-compatible (::a.b.c.d), deprecated but routable
        return ipaddress.IPv4Address(value)
    if address in _NAT64 or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(value & 0xFFFF_FFFF)
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is a public unicast one (any IPv4 address inside an IPv6 one counts too)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None and not is_public(inner):
            return False
        if address.is_site_local:
            return False
    # is_global is False for loopback, private, link-local, shared (CGNAT), reserved and
    # unspecified addresses; some multicast ranges count as global, so they are checked too.
    return address.is_global and not address.is_multicast and not address.is_reserved


def refusal(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    *,
    allow_private: bool = False,
    allow_networks: tuple[Network, ...] = (),
) -> str | None:
    """Why an address may not be fetched from, with the hint that would allow it; None when it may.

    Public addresses may; with ``allow_private`` loopback and private ones too, but never a
    link-local or cloud metadata address (``NEVER_UNLESS_LISTED``) unless one of
    ``allow_networks`` holds it. An IPv4 address inside an IPv6 one is judged as well.
    """
    inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    forms = (address,) if inner is None else (address, inner)
    if any(form in network for form in forms for network in allow_networks):
        return None
    if any(form in network for form in forms for network in NEVER_UNLESS_LISTED):
        return f"a link-local or cloud metadata address ({address}); {LISTED_HINT}"
    if not allow_private and not is_public(address):
        return f"a non-public address ({address}); {PRIVATE_HINT}"
    return None


def resolve(
    host: str, port: int, *, allow_private: bool = False, allow_networks: tuple[Network, ...] = ()
) -> str:
    """Resolve ``host`` and return the address to connect to; nothing is connected to here.

    Raises:
        ImageError: the name does not resolve, or any of its addresses is refused (``refusal``).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        why = refusal(address, allow_private=allow_private, allow_networks=allow_networks)
        if why is not None:
            raise ImageError(f"refusing to fetch from {host}: it resolves to {why}")
    return str(addresses[0])


def check_public_host(host: str, port: int) -> str:
    """Resolve ``host`` to a public address, or raise ImageError."""
    return resolve(host, port)


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


class _Watchdog:
    """Shuts a connection's socket when the deadline passes, whatever it is blocked on."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.fired = False
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _read_capped(response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    length = response.getheader("Content-Length", "")
    if length.isascii() and length.isdigit() and int(length) > max_bytes:
        raise ImageError(
            f"download too large: {int(length) / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:g} MB"
        )
    parts: list[bytes] = []
    total = 0
    while chunk := response.read1(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise ImageError(f"download too large: over the limit of {max_bytes / 1e6:g} MB")
        if time.monotonic() > deadline:
            raise TimeoutError
        parts.append(chunk)
    return b"".join(parts)


def plausible_time(ts: float) -> int | None:
    """A file or server time as unix seconds, or None when it is before 1970 or over a day ahead.

    Such a time (a Last-Modified in year 9999, a file touched to 2200) would date an item, and
    create a partition, that nobody asked for; the time of indexing is used instead.
    """
    return int(ts) if 0 <= ts <= time.time() + 86400 else None


def _modified_at(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return plausible_time(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _host_header(parts: urllib.parse.SplitResult, port: int) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return host if port == default else f"{host}:{port}"


def _hop(
    url: str, *, max_bytes: int, deadline: float, allow_private: bool, allow_networks: tuple[Network, ...]
) -> tuple[str | None, Fetched | None]:
    """One request: (the redirect target, None) or (None, what was downloaded)."""
    try:
        parts = urllib.parse.urlsplit(url)
        hostname, port = parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:  # a bad port, an unclosed [IPv6 address
        raise ImageError(f"not a valid URL: {url[:200]!r} ({exc})") from exc
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        raise ImageError(f"only http(s) URLs can be fetched, not {url[:200]!r}")
    # Every hop, redirects included, is checked here, before its connection is made.
    address = resolve(hostname, port, allow_private=allow_private, allow_networks=allow_networks)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    kind = _PinnedHTTPSConnection if parts.scheme.lower() == "https" else _PinnedHTTPConnection
    connection = kind(hostname, port, address, remaining)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with _Watchdog(connection, remaining) as watchdog:
        try:
            connection.request(
                "GET", path, headers={"User-Agent": USER_AGENT, "Host": _host_header(parts, port)}
            )
            response = connection.getresponse()
            location = response.getheader("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                return urllib.parse.urljoin(url, location), None
            if response.status >= 400:
                raise ImageError(f"HTTP {response.status} {response.reason}")
            data = _read_capped(response, max_bytes, deadline)
            if watchdog.fired:  # the socket was shut under the read: what came is cut short
                raise TimeoutError
            return None, Fetched(data, _modified_at(response.getheader("Last-Modified")))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if watchdog.fired or isinstance(exc, TimeoutError):
                raise TimeoutError from exc
            raise ImageError(f"download failed: {exc}") from exc
        finally:
            connection.close()


def download(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
    allow_networks: tuple[Network, ...] = (),
) -> Fetched:
    """Fetch an http(s) URL within one deadline and byte cap, checking every hop's address.

    Raises:
        ImageError: a non-http(s) scheme, a refused address, an HTTP error, too large, too slow.
    """
    deadline = time.monotonic() + timeout_s
    try:
        for _ in range(MAX_REDIRECTS + 1):
            target, fetched = _hop(
                url,
                max_bytes=max_bytes,
                deadline=deadline,
                allow_private=allow_private,
                allow_networks=allow_networks,
            )
            if fetched is not None:
                return fetched
            assert target is not None
            url = target
    except TimeoutError as exc:
        raise ImageError(f"download took longer than the limit of {timeout_s:g} s") from exc
    raise ImageError(f"too many redirects (over {MAX_REDIRECTS})")


def fetch_public_url(url: str, *, max_bytes: int, timeout_s: float) -> Fetched:
    """Fetch an http(s) URL given by an untrusted caller: public addresses only."""
    return download(url, max_bytes=max_bytes, timeout_s=timeout_s)


# What other outgoing requests (webhooks) share with downloads: a connection to the address checked,
# and the deadline's watchdog.
PinnedHTTPConnection = _PinnedHTTPConnection
PinnedHTTPSConnection = _PinnedHTTPSConnection
Watchdog = _Watchdog
