"""One attempt to deliver a webhook: POST the body to a configured URL, within one deadline.

Outgoing addresses follow the project's fetch rules (ingest/fetch.py), relaxed as fits URLs an
operator configured: loopback and private addresses are allowed (a shop's backend usually sits on
its own network), but link-local and cloud metadata addresses stay refused unless a network in
LOOKALIKE_ALLOW_NETWORKS holds them. The name is resolved and checked on every attempt and the
connection made to the address checked, so DNS cannot move a webhook onto the metadata service.
Redirects are never followed (a 3xx is a failed attempt), and at most 4 KB of the answer is read.
"""

from __future__ import annotations

import http.client
import urllib.parse

from lookalike.errors import ImageError
from lookalike.ingest.fetch import (
    USER_AGENT,
    Network,
    PinnedHTTPConnection,
    PinnedHTTPSConnection,
    Watchdog,
    resolve,
)

MAX_ANSWER = 4096


class DeliveryError(Exception):
    """An attempt that did not deliver; the message says why (kept with the delivery)."""


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    allow_networks: tuple[Network, ...] = (),
) -> int:
    """POST ``body`` to ``url``; returns the 2xx status.

    Raises:
        DeliveryError: a refused address, no connection, a timeout, or an answer other than 2xx.
    """
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname or ""
    try:
        address = resolve(host, port, allow_private=True, allow_networks=allow_networks)
    except ImageError as exc:
        raise DeliveryError(str(exc).replace("fetch from", "deliver to")) from None
    kind = PinnedHTTPSConnection if https else PinnedHTTPConnection
    connection = kind(host, port, address, timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = {"User-Agent": USER_AGENT, "Content-Length": str(len(body)), **headers}
    with Watchdog(connection, timeout_s) as watchdog:
        try:
            connection.request("POST", path, body=body, headers=sent)
            response = connection.getresponse()
            answer = response.read(MAX_ANSWER)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if watchdog.fired or isinstance(exc, TimeoutError):
                raise DeliveryError(f"no answer within {timeout_s:g} s") from None
            raise DeliveryError(f"cannot deliver: {exc}") from None
        finally:
            connection.close()
    if 200 <= response.status < 300:
        return response.status
    text = answer.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
    if 300 <= response.status < 400:
        where = response.getheader("Location", "")
        raise DeliveryError(f"HTTP {response.status} to {where[:200]!r}: webhooks do not follow redirects")
    raise DeliveryError(f"HTTP {response.status} {response.reason}" + (f": {text}" if text else ""))
