"""Bytes → an RGB PIL image, or an ImageError that says why not.

Pure functions: EXIF orientation applied; CMYK, 16-bit, palette, alpha and animated
images become 8-bit RGB (first frame); decompression bombs (too many pixels declared, or too many
to decode whole: ``MAX_DECODED_PIXELS``) and pictures too elongated for a model's resize
(``shape_problem``) are refused from the header, before decoding.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.embed.base import shape_problem
from lookalike.errors import ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
HEIC_EXTENSIONS = frozenset({".heic", ".heif"})

MAX_DECODED_PIXELS = 50_000_000
"""The most pixel work decode_image does on one picture: about 200 MB as PIL holds RGB, and a second.

A header may declare up to ``max_pixels`` (100 Mpx by default): a JPEG that large is decoded at a
reduced scale (``draft``) by callers that need only a model's input or a thumbnail. A PNG, WebP,
GIF or TIFF cannot be decoded at a reduced scale, and a flat 10,000 x 10,000 PNG of 300 KB cost
760 MB and seconds to decode whole. Modes that must be converted cost more than their pixels
(``MODE_COST``): a 7,000 x 7,000 RGBA PNG of 381 KB took 1.9 GB, a float TIFF of that size 3 GB.
A picture whose pixels times its mode's cost exceed this budget is refused as a bomb, from its
header, before a pixel is decoded.
"""

MODE_COST = {"RGBA": 3, "LA": 3, "PA": 3, "RGBa": 3, "La": 3, "I": 4, "F": 4, "I;16": 2, "I;16B": 2}
"""How many RGB images' worth of memory decoding and converting one of these modes takes (else 1)."""

# decode_image checks the pixel count itself, before decoding; PIL's warning is noise here.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _register_heif() -> bool:
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIC_SUPPORTED = _register_heif()


def supported_extensions() -> frozenset[str]:
    return IMAGE_EXTENSIONS | HEIC_EXTENSIONS if HEIC_SUPPORTED else IMAGE_EXTENSIONS


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    width: int
    height: int


def _to_8bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale scaled to 8 bits (a plain convert would clip everything to white)."""
    array = np.array(image, dtype=np.float32)  # a copy: scaled in place below
    high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
    if image.mode == "F":
        high = max(float(array.max()), 1.0)
    array *= 255.0 / high
    scaled = np.clip(array, 0, 255, out=array).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Onto white through the alpha as a mask: one RGB canvas, not three RGBA copies.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def decode_image(data: bytes, *, max_pixels: int = 100_000_000, draft: int | None = None) -> DecodedImage:
    """Decode image bytes into an upright RGB image.

    ``draft`` lets a JPEG decode at a reduced scale (1/2, 1/4, 1/8) whose sides stay at least
    that many pixels: several times faster for a model that sees 224 pixels. The width and
    height reported are still the stored image's.

    Raises:
        ImageError: empty, not an image, truncated or corrupt, too many pixels, or an aspect ratio
            over ``MAX_ASPECT_RATIO``.
    """
    if not data:
        raise ImageError("empty file")
    try:
        # open() reads only the header, so the size check below runs before any pixel is decoded.
        image: Image.Image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"decompression bomb: {width}x{height} pixels is over the limit of {max_pixels}")
        problem = shape_problem(width, height)
        if problem is not None:  # before any pixel is decoded or resized
            raise ImageError(problem)
        if getattr(image, "is_animated", False):
            image.seek(0)
        if draft and image.format == "JPEG":
            image.draft("RGB", (draft, draft))  # the size it will decode at is known at once
        decoded = image.size[0] * image.size[1]
        cost = MODE_COST.get(image.mode, 2 if image.mode.startswith("I;16") else 1)
        if decoded * cost > min(max_pixels, MAX_DECODED_PIXELS):
            mode = f" {image.mode}" if cost > 1 else ""
            raise ImageError(
                f"decompression bomb: a{mode} {image.format or 'picture'} of {width}x{height} pixels would "
                f"be decoded whole ({decoded / 1e6:.0f} Mpx"
                + (f", {cost} times the work of RGB" if cost > 1 else "")
                + f"), over the {MAX_DECODED_PIXELS // 1_000_000} Mpx lookalike decodes at once"
            )
        image.load()
        loaded = image.size
        image = ImageOps.exif_transpose(image) or image
        rgb = to_rgb(image)
        if image.size != loaded:  # turned a quarter by its EXIF orientation
            width, height = height, width
    except Image.DecompressionBombError as exc:
        raise ImageError(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (unrecognised format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        message = str(exc) or type(exc).__name__
        if "truncated" in message:
            raise ImageError(f"truncated image: {message}") from exc
        raise ImageError(f"corrupt image: {message}") from exc
    return DecodedImage(rgb, width, height)


def image_media_type(data: bytes) -> str:
    """The media type of encoded image bytes, from their format (not from any file name)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
    except (OSError, SyntaxError, ValueError):
        return "application/octet-stream"
    return Image.MIME.get(fmt.upper(), "application/octet-stream")


def shrink(data: bytes, size: int, *, max_pixels: int = 100_000_000) -> Image.Image:
    """Decode image bytes and shrink them to a longest side of ``size`` (a thumbnail).

    Raises:
        ImageError: as decode_image.
    """
    image = decode_image(data, max_pixels=max_pixels, draft=size).image  # a JPEG decodes at 1/2..1/8
    image.thumbnail((size, size))
    return image


def encode_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
