from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ImageError
from lookalike.ingest.decode import decode_image
from tests.helpers import jpeg_bytes, make_image


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb(fmt: str) -> None:
    decoded = decode_image(encode(make_image(1), fmt))
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == (160, 120)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = encode(make_image(2, size=(40, 20)), "JPEG", exif=exif)
    decoded = decode_image(data)
    assert (decoded.width, decoded.height) == (20, 40)


def test_cmyk_becomes_rgb() -> None:
    decoded = decode_image(encode(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "JPEG"))
    assert decoded.image.mode == "RGB"
    red, green, blue = decoded.image.getpixel((5, 5))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_greyscale_keeps_its_tones() -> None:
    array = np.full((8, 8), 32768, dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(array), "PNG"))
    value = decoded.image.getpixel((0, 0))
    assert decoded.image.mode == "RGB"
    assert value[0] == value[1] == value[2]  # type: ignore[index]
    assert 120 <= value[0] <= 135  # type: ignore[index]


def test_palette_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    data = encode(image, "PNG", transparency=0)
    assert decode_image(data).image.getpixel((0, 0)) == (255, 255, 255)


def test_palette_without_transparency_keeps_colours() -> None:
    data = encode(make_image(3).convert("P"), "PNG")
    assert decode_image(data).image.mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode: str) -> None:
    colour = (0, 0, 0, 0) if mode == "RGBA" else (0, 0)
    data = encode(Image.new(mode, (4, 4), colour), "PNG")
    assert decode_image(data).image.getpixel((1, 1)) == (255, 255, 255)


def test_animated_gif_uses_its_first_frame() -> None:
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    blue = Image.new("RGB", (8, 8), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100)
    pixel = decode_image(data).image.getpixel((4, 4))
    assert pixel[0] > 200 and pixel[2] < 50  # type: ignore[index]


def test_empty_file_is_refused() -> None:
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_text_is_not_an_image() -> None:
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"hello, this is a text file\n")


def test_truncated_jpeg_is_refused() -> None:
    data = jpeg_bytes(make_image(4, size=(400, 300)))
    with pytest.raises(ImageError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def test_corrupt_body_is_refused() -> None:
    data = bytearray(encode(make_image(5), "PNG"))
    data[60:200] = b"\x00" * 140
    with pytest.raises(ImageError):
        decode_image(bytes(data))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # 12000 x 12000 one-bit pixels compress to a few kilobytes but would decode to 144 Mpx.
    data = encode(Image.new("1", (12000, 12000)), "PNG")
    assert len(data) < 200_000
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(data)


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(encode(make_image(6), "PNG"), max_pixels=1000)
