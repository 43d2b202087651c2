"""What was read at index time, kept so that an item's image is served as it was indexed.

A URL item's bytes are kept under the upload folder, named by their hash; its URL is never
fetched again. A local item's file is read again, but only if its bytes still hash to what
was stored (a file replaced since, by other bytes or by a link elsewhere, is not served).
"""

from __future__ import annotations

from pathlib import Path

from lookalike import durable
from lookalike.errors import ImageError
from lookalike.ingest.ids import content_hash
from lookalike.ingest.policy import is_url, read_file


def kept_path(folder: str | Path, sha256: str) -> Path:
    return Path(folder) / "urls" / sha256[:2] / f"{sha256}.img"


def keep(folder: str | Path, sha256: str, data: bytes) -> None:
    """Keep the bytes of a URL image (atomically; once per content)."""
    target = kept_path(folder, sha256)
    if target.exists():
        return
    durable.write_bytes(target, data, step="kept")


def stored_image(uri: str, sha256: str, folder: str | Path, *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes an item was indexed from.

    Raises:
        ImageError: not kept (a URL item indexed before images were kept), gone, or changed.
    """
    if is_url(uri):
        path = kept_path(folder, sha256)
        if not path.is_file():
            raise ImageError("the image of this URL item was not kept when it was indexed (index it again)")
        data = read_file(str(path), max_bytes=max_bytes, timeout_s=timeout_s).data
    else:
        data = read_file(uri, max_bytes=max_bytes, timeout_s=timeout_s).data
    if content_hash(data) != sha256:
        raise ImageError("the file has changed since it was indexed")
    return data
