"""Thumbnails of stored images, for reports and galleries."""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

from lookalike.errors import ImageError
from lookalike.ingest import decode_image, fetch
from lookalike.ingest.sources import is_url

THUMB_SIZE = 160


def thumbnail(uri: str, size: int = THUMB_SIZE, *, max_bytes: int = 50_000_000) -> Image.Image | None:
    """The image at ``uri`` shrunk to a longest side of ``size``; None when it cannot be read."""
    try:
        decoded = decode_image(fetch(uri, max_bytes=max_bytes, timeout_s=10).data)
    except ImageError:
        return None
    image = decoded.image
    image.thumbnail((size, size))
    return image


def thumbnail_jpeg(uri: str, size: int = THUMB_SIZE) -> bytes | None:
    image = thumbnail(uri, size)
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def img_tag(uri: str, alt: str, size: int = THUMB_SIZE) -> str:
    """An <img> for an HTML report: local files inline as data URIs, URLs linked as they are."""
    if is_url(uri):
        return f'<img src="{html.escape(uri)}" alt="{html.escape(alt)}" loading="lazy">'
    data = thumbnail_jpeg(uri, size)
    if data is None:
        return f'<div class="missing" title="{html.escape(uri)}">image unavailable</div>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{encoded}" alt="{html.escape(alt)}">'
