"""Read an image's bytes from a local path or an http(s) URL, with a size cap and a timeout."""

from __future__ import annotations

import email.utils
import urllib.error
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
