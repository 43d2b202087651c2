"""A picture too elongated for a model's resize is refused from its header, before any pixel is decoded.

A 3 KB PNG of 1,000,000 × 1 pixels is 1 Mpx, far under the pixel cap, but the short-side resize
every encoder does would make it 224,000,000 × 224 pixels. The bombs are built here with PIL."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image, ImageFile

from lookalike.embed.base import MAX_ASPECT_RATIO, shape_problem
from lookalike.embed.detect import crop, select_detections
from lookalike.errors import ConfigError, ImageError
from lookalike.ingest.decode import MAX_DECODED_PIXELS, MODE_COST, decode_image, shrink

BOMBS = [(1_000_000, 1), (200_000, 1), (1, 200_000)]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", BOMBS)
def test_an_elongated_picture_is_refused_before_any_pixel_is_decoded(
    size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = png(*size)
    assert len(data) < 5_000  # a few KB: the cap on bytes cannot stop it

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "resize", no_decoding)
    for attempt in (
        lambda: decode_image(data),
        lambda: decode_image(data, draft=224),
        lambda: shrink(data, 64),
    ):
        with pytest.raises(ImageError) as refused:
            attempt()
        reason = str(refused.value)
        assert "aspect ratio" in reason and f"{max(size):,}:1" in reason and "100:1" in reason
        assert f"{224 * max(size):,}" in reason  # what the resize would have made of it


def test_banners_and_long_pictures_inside_the_bound_decode() -> None:
    for size in [(MAX_ASPECT_RATIO, 1), (1, MAX_ASPECT_RATIO), (4000, 40), (728, 90), (790, 30_000)]:
        decoded = decode_image(png(*size))
        assert (decoded.width, decoded.height) == size
    for size in [(MAX_ASPECT_RATIO + 1, 1), (1, MAX_ASPECT_RATIO + 1), (10_001, 100)]:
        with pytest.raises(ImageError, match="aspect ratio"):
            decode_image(png(*size))
    assert shape_problem(0, 10) == "no pixels: 0x10"


def test_refusing_bombs_costs_little_memory_and_time() -> None:
    """In a fresh process capped at 2 GB of address space, each bomb goes where ingest takes a picture
    (decode, then an encoder's short-side resize to 224): all are refused, the peak RSS grows by less
    than 64 MB, and the lot takes under a second."""
    script = """
import io, json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from PIL import Image
from lookalike.errors import ImageError
from lookalike.ingest.decode import decode_image
bombs = []
for size in json.loads(sys.argv[1]):
    buffer = io.BytesIO()
    Image.new("RGB", tuple(size)).save(buffer, format="PNG")
    bombs.append(buffer.getvalue())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
refused = 0
for data in bombs * 3:
    try:
        image = decode_image(data).image
    except ImageError:
        refused += 1
        continue
    scale = 224 / min(image.size)
    image.resize((round(image.width * scale), round(image.height * scale)))
took = time.perf_counter() - started
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"refused": refused, "took": took, "grown_kb": grown}))
"""
    ran = subprocess.run(
        [sys.executable, "-c", script, json.dumps(BOMBS)], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    measured = json.loads(ran.stdout)
    assert measured["refused"] == 3 * len(BOMBS)
    # The second is the bound on a quiet machine; a loaded CI machine gets slack (a hang guard).
    assert measured["grown_kb"] < 64 * 1024 and measured["took"] < 10.0, measured


def declared(width: int, height: int, mode: str = "RGB") -> bytes:
    """A small PNG whose header declares width x height (its pixels never come: decoding would fail)."""
    buffer = io.BytesIO()
    Image.new(mode, (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


@pytest.mark.parametrize("size", [(9_999, 9_999), (7_100, 7_100), (20_000, 2_600)])
def test_a_picture_too_large_to_decode_whole_is_refused_from_its_header(
    size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the 100 Mpx cap, but a PNG cannot be decoded at a reduced scale: 9,999 x 9,999 cost
    760 MB and seconds. Refused before a pixel is decoded, with the reason."""
    data = declared(*size)
    assert Image.open(io.BytesIO(data)).size == size

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for attempt in (
        lambda: decode_image(data),
        lambda: decode_image(data, draft=224),
        lambda: shrink(data, 64),
    ):
        with pytest.raises(ImageError, match=rf"decompression bomb: a PNG of {size[0]}x{size[1]} .* 50 Mpx"):
            attempt()


@pytest.mark.parametrize(
    ("mode", "size", "cost"),
    [("RGBA", (7_000, 7_000), 3), ("LA", (5_000, 4_000), 3), ("I;16", (6_000, 5_000), 2)],
)
def test_modes_that_must_be_converted_count_their_extra_work(
    mode: str, size: tuple[int, int], cost: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 7,000 x 7,000 RGBA PNG of 381 KB took 1.9 GB to decode and composite (a float TIFF 3 GB):
    under 50 Mpx, but not under 50 Mpx of RGB's work."""
    data = declared(*size, mode=mode)
    opened = Image.open(io.BytesIO(data))
    assert (
        opened.size == size and MODE_COST.get(opened.mode, 2 if opened.mode.startswith("I;16") else 1) == cost
    )
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: (_ for _ in ()).throw(AssertionError("decoded"))
    )
    with pytest.raises(ImageError, match=rf"{cost} times the work of RGB"):
        decode_image(data)


def test_transparency_and_deep_greys_still_decode_to_rgb_within_the_budget() -> None:
    rgba = Image.new("RGBA", (300, 200), (200, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 150, 200))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    rgb = decode_image(buffer.getvalue()).image
    assert (
        rgb.mode == "RGB"
        and rgb.getpixel((10, 10)) == (0, 0, 255)
        and rgb.getpixel((250, 10)) == (255, 255, 255)
    )
    grey = Image.new("I;16", (64, 64), 65535)
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    assert decode_image(buffer.getvalue()).image.getpixel((3, 3)) == (255, 255, 255)


def test_a_large_jpeg_decodes_at_a_reduced_scale_where_its_caller_allows_it() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8_000, 8_000), (10, 120, 30)).save(buffer, format="JPEG")  # 64 Mpx
    data = buffer.getvalue()
    assert MAX_DECODED_PIXELS < 64_000_000
    reduced = decode_image(data, draft=224)  # what ingest and an image query without a box ask for
    assert (reduced.width, reduced.height) == (8_000, 8_000) and reduced.image.size == (1_000, 1_000)
    assert shrink(data, 256).size == (256, 256)  # thumbnails too
    with pytest.raises(ImageError, match="decoded whole"):  # a caller that needs every pixel
        decode_image(data)


def test_a_detected_sliver_is_dropped_and_a_sliver_box_asked_for_is_refused() -> None:
    raw = [((0.0, 0.0, 1000.0, 2.0), "belt", 0.9), ((0.0, 0.0, 400.0, 300.0), "bag", 0.8)]
    kept = select_detections(raw, 1000, 1000, min_score=0.25, min_size=1)
    assert [d.label for d in kept] == ["bag"]
    image = Image.new("RGB", (1000, 1000))
    with pytest.raises(ConfigError, match=r"The box 0,0,1000,1 cannot be searched: extreme aspect ratio"):
        crop(image, (0, 0, 1000, 1))
    assert crop(image, (0, 0, 1000, 10)).size == (1000, 10)
