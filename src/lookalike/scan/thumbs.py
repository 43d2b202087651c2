"""Thumbnails of stored images, shared by the HTML reports and the PNG result grid."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lookalike import durable
from lookalike.errors import ConfigError, ImageError
from lookalike.ingest import encode_jpeg, fetch, shrink
from lookalike.ingest.sources import is_url

THUMB_SIZE = 160


def thumbnail(uri: str, size: int = THUMB_SIZE, *, max_bytes: int = 50_000_000) -> Image.Image | None:
    """The image at ``uri`` shrunk to a longest side of ``size``; None when it cannot be read."""
    try:
        return shrink(fetch(uri, max_bytes=max_bytes, timeout_s=10).data, size)
    except ImageError:
        return None


def thumbnail_jpeg(uri: str, size: int = THUMB_SIZE) -> bytes | None:
    image = thumbnail(uri, size)
    return None if image is None else encode_jpeg(image, quality=82)


def img_tag(uri: str, alt: str, size: int = THUMB_SIZE) -> str:
    """An <img> for an HTML report: local files inline as data URIs, URLs linked as they are."""
    if is_url(uri):
        return f'<img src="{html.escape(uri)}" alt="{html.escape(alt)}" loading="lazy">'
    data = thumbnail_jpeg(uri, size)
    if data is None:
        return f'<div class="missing" title="{html.escape(uri)}">image unavailable</div>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{encoded}" alt="{html.escape(alt)}">'


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _fit(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int
) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def write_grid(
    path: str | Path, title: str, cells: Sequence[tuple[str, str, str]], *, columns: int = 5
) -> None:
    """A PNG contact sheet: a title, then one cell per (uri, caption, score) with its thumbnail.

    Raises:
        ConfigError: the file name does not end in .png.
    """
    target = Path(path).expanduser()
    if target.suffix.lower() != ".png":
        raise ConfigError(f"--grid writes a PNG: give a file name ending in .png, not {path}.")
    cell_w, thumb, pad, title_h = 210, 190, 10, 48
    columns = max(1, min(columns, len(cells) or 1))
    rows = max(1, -(-len(cells) // columns))
    sheet = Image.new("RGB", (columns * cell_w + pad, title_h + rows * (thumb + 52) + pad), (247, 247, 249))
    draw = ImageDraw.Draw(sheet)
    title_font, text_font, score_font = _font(18), _font(13), _font(13)
    draw.text(
        (pad + 2, 14),
        _fit(draw, title, title_font, sheet.width - 2 * pad),
        fill=(31, 35, 48),
        font=title_font,
    )
    for index, (uri, caption, score) in enumerate(cells):
        x = pad + (index % columns) * cell_w
        y = title_h + (index // columns) * (thumb + 52)
        draw.rectangle(
            (x, y, x + cell_w - pad, y + thumb + 44), fill=(255, 255, 255), outline=(229, 231, 235)
        )
        image = thumbnail(uri, thumb - 10)
        if image is None:
            draw.text((x + 50, y + thumb // 2 - 8), "image unavailable", fill=(150, 150, 150), font=text_font)
        else:
            sheet.paste(
                image, (x + (cell_w - pad - image.width) // 2, y + 5 + (thumb - 10 - image.height) // 2)
            )
        draw.text(
            (x + 6, y + thumb + 2),
            _fit(draw, caption, text_font, cell_w - pad - 12),
            fill=(31, 35, 48),
            font=text_font,
        )
        draw.text((x + 6, y + thumb + 22), score, fill=(225, 29, 72), font=score_font)
    with durable.replacing_file(target, "wb") as handle:
        sheet.save(handle, format=Image.registered_extensions().get(target.suffix.lower(), "PNG"))
