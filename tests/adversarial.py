"""A corpus of odd and hostile inputs, generated: files a careless or malicious uploader leaves in a
folder, and catalogs that are broken or abusive. Each kind says what must become of it: indexed
("good"), or reported with a reason containing the given words.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.helpers import make_image

GOOD = "good"


@dataclass(frozen=True)
class Kind:
    """One kind of input: the file name(s) it creates, how, and what must happen to each."""

    name: str  # what the kind is
    files: tuple[bytes, ...]  # the names it creates, relative to the corpus folder (bytes: any encoding)
    expect: str  # GOOD, or words the skip reason contains
    make: Callable[[Path], None]


def _image(seed: int, fmt: str = "JPEG", mode: str = "RGB", size: tuple[int, int] = (96, 72)) -> bytes:
    buffer = io.BytesIO()
    image = make_image(seed, size=size)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _write(name: bytes, data: bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        path = os.path.join(os.fsencode(folder), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)

    return make


def _link(name: bytes, target: str | bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        os.symlink(target, os.path.join(os.fsencode(folder), name))

    return make


def _fifo(name: bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        os.mkfifo(os.path.join(os.fsencode(folder), name))

    return make


def _socket(name: bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        path = os.path.join(os.fsencode(folder), name)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)  # the file stays after the socket closes
        server.close()

    return make


def _mkdir(name: bytes, with_image: bool = True) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        path = os.path.join(os.fsencode(folder), name)
        os.makedirs(path, exist_ok=True)
        if with_image:
            with open(os.path.join(path, b"inside.jpg"), "wb") as handle:
                handle.write(_image(77))

    return make


def _two_links(a: bytes, b: bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        root = os.fsencode(folder)
        os.symlink(b, os.path.join(root, a))
        os.symlink(a, os.path.join(root, b))

    return make


def _deep(name: bytes) -> Callable[[Path], None]:
    """An image at the end of a path longer than the store's 4096-byte uri field (and PATH_MAX)."""

    def make(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            for _ in range(18):  # 18 x 250 bytes: built with relative steps, as no absolute path fits
                os.mkdir(b"d" * 249, dir_fd=fd)
                inner = os.open(b"d" * 249, os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = inner
            out = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(out, _image(5))
            os.close(out)
        finally:
            os.close(fd)

    return make


def _dated(name: bytes, mtime: int) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        _write(name, _image(abs(mtime) % 997))(folder)
        path = os.path.join(os.fsencode(folder), name)
        os.utime(path, (mtime, mtime))

    return make


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")


def _bad_crc_png() -> bytes:
    data = bytearray(_image(3, "PNG"))
    data[29] ^= 0xFF  # inside the IHDR chunk's CRC
    return bytes(data)


def _animated_gif() -> bytes:
    frames = [make_image(i, size=(64, 48)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _exif_rotated() -> bytes:
    image = make_image(21, size=(80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def _png_with_transparency() -> bytes:
    image = make_image(22, size=(64, 64)).convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    return buffer.getvalue()


def _sixteen_bit() -> bytes:
    image = make_image(23, size=(64, 48)).convert("I;16")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    # 3000 x 3000 one-bit pixels compress to a few KB; the test's pixel limit is 4 million.
    buffer = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buffer, format="PNG")
    return buffer.getvalue()


def corpus_kinds() -> list[Kind]:
    """Every kind of odd file in the corpus (at least 50), good ones included."""
    jpeg = _image(1)
    kinds = [
        # special files: refused before they are opened for reading, so nothing hangs or streams
        Kind("a FIFO named like a JPEG", (b"fifo.jpg",), "FIFO", _fifo(b"fifo.jpg")),
        Kind(
            "a FIFO in a subfolder",
            (b"sub/fifo.png",),
            "FIFO",
            lambda f: (f / "sub").mkdir() or _fifo(b"sub/fifo.png")(f),
        ),
        Kind("a Unix socket", (b"sock.jpg",), "socket", _socket(b"sock.jpg")),
        Kind("a link to /dev/null", (b"null.jpg",), "character device", _link(b"null.jpg", "/dev/null")),
        Kind("a link to /dev/zero", (b"zero.png",), "character device", _link(b"zero.png", "/dev/zero")),
        Kind(
            "a link to /dev/urandom",
            (b"random.jpg",),
            "character device",
            _link(b"random.jpg", "/dev/urandom"),
        ),
        Kind(
            "a link to a file that cannot be read",
            (b"mem.jpg",),
            "cannot read",
            _link(b"mem.jpg", "/proc/self/mem"),
        ),
        Kind(
            "a link to a /proc text file",
            (b"environ.jpg",),
            "not an image",
            _link(b"environ.jpg", "/proc/self/environ"),
        ),
        Kind(
            "a symlink loop between two files",
            (b"loop_a.jpg", b"loop_b.jpg"),
            "loop",
            _two_links(b"loop_a.jpg", b"loop_b.jpg"),
        ),
        Kind("a symlink to itself", (b"self.jpg",), "loop", _link(b"self.jpg", "self.jpg")),
        Kind(
            "a dangling symlink",
            (b"dangling.jpg",),
            "not found",
            _link(b"dangling.jpg", "nowhere/missing.jpg"),
        ),
        Kind("a symlink to a folder", (b"linked",), "link to a folder", _link(b"linked", "/etc")),
        Kind("a folder that links to itself", (b"again",), "link to a folder", _link(b"again", ".")),
        Kind(
            "a folder named like an image",
            (b"folder.jpg",),
            "folder named like an image",
            _mkdir(b"folder.jpg"),
        ),
        Kind("a good image inside that folder", (b"folder.jpg/inside.jpg",), GOOD, lambda f: None),
        Kind("a hidden image", (b".hidden.jpg",), "hidden", _write(b".hidden.jpg", jpeg)),
        Kind("a name that is only an extension", (b".jpg",), "hidden", _write(b".jpg", _image(2))),
        Kind(
            "a name that is not UTF-8",
            (b"caf\xe9-\xff.jpg",),
            "not valid UTF-8",
            _write(b"caf\xe9-\xff.jpg", _image(4)),
        ),
        Kind("a path over 4096 bytes", (), "too long", _deep(b"deep.jpg")),
        Kind("an empty file", (b"empty.jpg",), "empty", _write(b"empty.jpg", b"")),
        Kind("text named .jpg", (b"notes.jpg",), "not an image", _write(b"notes.jpg", b"hello, I am text\n")),
        Kind(
            "HTML named .png",
            (b"page.png",),
            "not an image",
            _write(b"page.png", b"<html><script>alert(1)</script></html>"),
        ),
        Kind(
            "a truncated JPEG",
            (b"truncated.jpg",),
            "truncated",
            _write(b"truncated.jpg", _image(6, size=(400, 300))[:700]),
        ),
        Kind(
            "a JPEG header and garbage",
            (b"garbage.jpg",),
            "image",
            _write(b"garbage.jpg", b"\xff\xd8\xff\xe0" + os.urandom(2000)),
        ),
        Kind(
            "a truncated PNG", (b"truncated.png",), "image", _write(b"truncated.png", _image(7, "PNG")[:60])
        ),
        Kind("a PNG with a bad checksum", (b"crc.png",), "image", _write(b"crc.png", _bad_crc_png())),
        Kind(
            "a PNG header claiming 60000 x 60000",
            (b"claims.png",),
            "decompression bomb",
            _write(b"claims.png", _png_header_only(60000, 60000)),
        ),
        Kind("a decompression bomb", (b"bomb.png",), "decompression bomb", _write(b"bomb.png", _bomb())),
        Kind(
            "a file over the size cap",
            (b"huge.jpg",),
            "too large",
            _write(b"huge.jpg", jpeg + os.urandom(1_200_000)),
        ),
        Kind("a truncated GIF", (b"cut.gif",), "image", _write(b"cut.gif", _animated_gif()[:40])),
        Kind(
            "a garbage WebP",
            (b"bad.webp",),
            "image",
            _write(b"bad.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + os.urandom(64)),
        ),
        Kind(
            "a BMP with an absurd header",
            (b"absurd.bmp",),
            "image",
            _write(b"absurd.bmp", b"BM" + b"\xff" * 60),
        ),
        Kind(
            "a TIFF header only", (b"header.tif",), "image", _write(b"header.tif", b"II*\x00\x08\x00\x00\x00")
        ),
        Kind(
            "an SVG",
            (b"vector.svg",),
            "not a supported image format",
            _write(b"vector.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ),
        Kind(
            "a PDF", (b"scan.pdf",), "not a supported image format", _write(b"scan.pdf", b"%PDF-1.4\n%%EOF\n")
        ),
        Kind(
            "a HEIC without its plugin",
            (b"phone.heic",),
            "HEI",
            _write(b"phone.heic", b"\x00\x00\x00\x18ftypheic"),
        ),
        Kind(
            "an AVIF",
            (b"modern.avif",),
            "not a supported image format",
            _write(b"modern.avif", b"\x00\x00\x00\x1cftypavif"),
        ),
        Kind(
            "a Photoshop file",
            (b"layers.psd",),
            "not a supported image format",
            _write(b"layers.psd", b"8BPS"),
        ),
        Kind(
            "an icon",
            (b"favicon.ico",),
            "not a supported image format",
            _write(b"favicon.ico", b"\x00\x00\x01\x00"),
        ),
        # odd but good: every one of these must be indexed
        Kind("a plain JPEG", (b"plain.jpg",), GOOD, _write(b"plain.jpg", jpeg)),
        Kind(
            "Rich markup in a name",
            (b"k42_[reverse]MARKUP[blink].jpg",),
            GOOD,
            _write(b"k42_[reverse]MARKUP[blink].jpg", _image(8)),
        ),
        Kind("a closing markup tag in a name", (b"x][/y]b.jpg",), GOOD, _write(b"x][/y]b.jpg", _image(9))),
        Kind(
            "an ANSI escape in a name",
            (b"\x1b[31mred\x1b[0m.jpg",),
            GOOD,
            _write(b"\x1b[31mred\x1b[0m.jpg", _image(10)),
        ),
        Kind("a newline in a name", (b"new\nline.jpg",), GOOD, _write(b"new\nline.jpg", _image(11))),
        Kind(
            "a right-to-left override in a name",
            ("\u202egpj.exe.jpg".encode(),),
            GOOD,
            _write("\u202egpj.exe.jpg".encode(), _image(12)),
        ),
        Kind(
            "an emoji code in a name", (b":smile: face.jpg",), GOOD, _write(b":smile: face.jpg", _image(13))
        ),
        Kind("a name starting with a dash", (b"-rf.jpg",), GOOD, _write(b"-rf.jpg", _image(14))),
        Kind("a CJK name", ("萨摩耶.jpg".encode(),), GOOD, _write("萨摩耶.jpg".encode(), _image(15))),
        Kind("a 250-byte name", (b"n" * 246 + b".jpg",), GOOD, _write(b"n" * 246 + b".jpg", _image(16))),
        Kind(
            "a trailing space and a backslash",
            (b"back\\slash .jpg",),
            GOOD,
            _write(b"back\\slash .jpg", _image(17)),
        ),
        Kind("an upper-case extension", (b"SHOUT.JPEG",), GOOD, _write(b"SHOUT.JPEG", _image(18))),
        Kind("a PNG named .jpg", (b"really-png.jpg",), GOOD, _write(b"really-png.jpg", _image(19, "PNG"))),
        Kind(
            "a JPEG with a ZIP appended",
            (b"polyglot.jpg",),
            GOOD,
            _write(b"polyglot.jpg", _image(20) + b"PK\x03\x04" + os.urandom(200)),
        ),
        Kind("an EXIF-rotated JPEG", (b"rotated.jpg",), GOOD, _write(b"rotated.jpg", _exif_rotated())),
        Kind("a CMYK JPEG", (b"cmyk.jpg",), GOOD, _write(b"cmyk.jpg", _image(24, mode="CMYK"))),
        Kind("a greyscale PNG", (b"grey.png",), GOOD, _write(b"grey.png", _image(25, "PNG", "L"))),
        Kind("a 16-bit PNG", (b"sixteen.png",), GOOD, _write(b"sixteen.png", _sixteen_bit())),
        Kind(
            "a palette PNG with transparency",
            (b"palette.png",),
            GOOD,
            _write(b"palette.png", _png_with_transparency()),
        ),
        Kind("an animated GIF", (b"animated.gif",), GOOD, _write(b"animated.gif", _animated_gif())),
        Kind(
            "a one-pixel image", (b"pixel.png",), GOOD, _write(b"pixel.png", _image(26, "PNG", size=(1, 1)))
        ),
        Kind("a WebP", (b"small.webp",), GOOD, _write(b"small.webp", _image(27, "WEBP"))),
        Kind("a TIFF", (b"scan.tiff",), GOOD, _write(b"scan.tiff", _image(28, "TIFF"))),
        Kind("a BMP", (b"old.bmp",), GOOD, _write(b"old.bmp", _image(29, "BMP"))),
        Kind("a symlink to a good image", (b"alias.jpg",), GOOD, _link(b"alias.jpg", "plain.jpg")),
        Kind("the same bytes under a second name", (b"copy.jpg",), GOOD, _write(b"copy.jpg", jpeg)),
        Kind("a file dated in year 9999", (b"future.jpg",), GOOD, _dated(b"future.jpg", 253402300799)),
        Kind("a file dated before 1970", (b"past.jpg",), GOOD, _dated(b"past.jpg", -86400 * 365)),
    ]
    return kinds


def build_corpus(folder: Path) -> list[Kind]:
    """Write every kind into ``folder``; returns the kinds."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = corpus_kinds()
    for kind in kinds:
        kind.make(folder)
    return kinds


def shown(folder: Path, name: bytes) -> str:
    """How a corpus file's path appears in a report (non-UTF-8 bytes as \\xNN)."""
    return os.path.join(os.fsencode(folder), name).decode("utf-8", "backslashreplace")
