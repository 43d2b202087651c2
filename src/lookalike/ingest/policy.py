"""The one policy for every path and URL that comes from outside: what may be read, from where,
how many bytes and for how long.

- URLs: http(s) only, public addresses only unless ``allow_private``; link-local and cloud
  metadata addresses only when ``allow_networks`` lists them (see fetch.py).
- Objects (``s3://bucket/key``, the command line only): the same byte cap and deadline, read with
  the AWS variables' credentials (see objects.py).
- Local paths: regular files only (a FIFO, device or socket is refused before it is opened for
  reading, so it cannot hang a run), at most ``max_bytes``; when ``roots`` is set (the API),
  only files whose real path lies under one of them. Refusals outside the roots say nothing
  about whether the path exists.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lookalike.errors import ImageError, PathRefusedError
from lookalike.ingest.fetch import Fetched, Network, download, plausible_time

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)


S3_SCHEME = "s3://"


def is_s3(value: str) -> bool:
    """Whether a value names an object or prefix in S3-compatible storage (ingest/objects.py)."""
    return value.startswith(S3_SCHEME)


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def has_scheme(value: str) -> bool:
    """Whether a value looks like a URL of some scheme (file://, ftp://, gopher://...)."""
    head, sep, _ = value.partition("://")
    return bool(sep) and head.isascii() and head.isalpha()


def printable_path(value: str | os.PathLike[str]) -> str:
    """A path as text that encodes as UTF-8: bytes of a non-UTF-8 name shown as \\xNN."""
    return os.fsencode(value).decode("utf-8", "backslashreplace")


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "file not found"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if exc.errno == errno.ENXIO:
        return "not a regular file (a socket or device)"
    return f"cannot read file: {exc.strerror or exc}"


def _kind(mode: int) -> str | None:
    for test, name in _KINDS:
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def file_problem(path: str) -> str | None:
    """Why a local path is no regular file this process can read (saying what it is), or None.

    A check before work starts (a model loads); :func:`read_file` checks again as it opens.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return "a broken symbolic link (its target does not exist)"
        return _os_reason(exc)
    except (ValueError, RuntimeError) as exc:  # an embedded NUL; a symlink loop on some Pythons
        return f"cannot read file: {exc}"
    kind = _kind(mode)
    if kind is not None:
        return f"not a regular file: {kind}"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def read_file(path: str, *, max_bytes: int, timeout_s: float) -> Fetched:
    """The bytes of a regular file, at most ``max_bytes``, read within ``timeout_s``.

    Raises:
        ImageError: missing, not a regular file, unreadable, too large or too slow.
    """
    try:
        before = os.stat(path)
        kind = _kind(before.st_mode)
        if kind is not None:
            raise ImageError(f"not a regular file: {kind}")
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise ImageError(_os_reason(exc)) from exc
    except (ValueError, RuntimeError) as exc:  # an embedded NUL; a symlink loop on some Pythons
        raise ImageError(f"cannot read file: {exc}") from exc
    try:
        opened = os.fstat(fd)
        kind = _kind(opened.st_mode)
        if kind is not None:  # swapped between the check and the open
            raise ImageError(f"not a regular file: {kind}")
        if opened.st_size > max_bytes:
            raise ImageError(
                f"file too large: {opened.st_size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:g} MB"
            )
        os.set_blocking(fd, True)
        data = _read_fd(fd, max_bytes, time.monotonic() + timeout_s)
        return Fetched(data, plausible_time(opened.st_mtime))
    except OSError as exc:
        raise ImageError(_os_reason(exc)) from exc
    finally:
        os.close(fd)


def _read_fd(fd: int, max_bytes: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := os.read(fd, 1 << 20):
        total += len(chunk)
        if total > max_bytes:  # a file that grows while it is read (or /proc files of size 0)
            raise ImageError(f"file too large: over the limit of {max_bytes / 1e6:g} MB")
        if time.monotonic() > deadline:
            raise ImageError("reading the file took too long")
        parts.append(chunk)
    return b"".join(parts)


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError, RuntimeError):
        return ""


@dataclass(frozen=True)
class FetchPolicy:
    """How outside inputs are read.

    Args:
        max_bytes: the byte cap of one file or download.
        timeout_s: the deadline of one file read or download (connect, redirects, body).
        allow_private: fetch URLs of loopback and private addresses too (never link-local or
            cloud metadata addresses: those only when ``allow_networks`` holds them).
        allow_networks: networks whose addresses are fetched whatever they are.
        roots: None reads any local path (the command line); otherwise only files whose real
            path lies under one of these folders (the API; empty: no local paths at all).
    """

    max_bytes: int = 50_000_000
    timeout_s: float = 20.0
    allow_private: bool = False
    roots: tuple[str, ...] | None = None
    allow_networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any, *, server: bool = False) -> FetchPolicy:
        roots = tuple(_real(root) for root in settings.index_roots_list()) if server else None
        return cls(
            max_bytes=int(settings.max_download_mb * 1e6),
            timeout_s=float(settings.fetch_timeout_s),
            allow_private=bool(settings.allow_private_urls),
            roots=roots,
            allow_networks=settings.allowed_networks(),
        )

    def only_under(self, *folders: str) -> FetchPolicy:
        """This policy, reading local files under these folders only."""
        return replace(self, roots=tuple(_real(folder) for folder in folders))

    def allows_path(self, path: str) -> bool:
        if self.roots is None:
            return True
        real = _real(path)
        return bool(real) and any(
            real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots
        )

    def check_path(self, value: str) -> None:
        """Refuse, before anything is read or even looked up, a local path outside the roots.

        Raises:
            PathRefusedError: the same message whether or not the path exists.
        """
        if self.roots is None:
            return
        if not self.roots:
            raise PathRefusedError(
                "server paths cannot be indexed through the API: upload the files or give http(s) URLs "
                "(the server's LOOKALIKE_INDEX_ROOTS names the folders it may read)"
            )
        if not self.allows_path(str(Path(value).expanduser())):
            raise PathRefusedError(
                "this path is not under a folder the server may read (LOOKALIKE_INDEX_ROOTS)"
            )

    def check_inputs(self, inputs: Sequence[str]) -> None:
        """Check every input a request names: URLs by scheme, local paths by the roots."""
        for value in inputs:
            if is_url(value):
                continue
            if has_scheme(value):
                raise ImageError(f"only http(s) URLs can be fetched, not {value[:200]!r}")
            self.check_path(value)

    def read(self, uri: str) -> Fetched:
        """The bytes behind a URL or a local path, under this policy.

        Raises:
            ImageError: refused, missing, unreadable, too large or too slow; the message says which.
        """
        if is_url(uri):
            return download(
                uri,
                max_bytes=self.max_bytes,
                timeout_s=self.timeout_s,
                allow_private=self.allow_private,
                allow_networks=self.allow_networks,
            )
        if is_s3(uri) and self.roots is None:  # the command line; the API reads no buckets
            from lookalike.ingest.objects import read_object

            return read_object(uri, max_bytes=self.max_bytes, timeout_s=self.timeout_s)
        if has_scheme(uri):
            raise ImageError(f"only http(s) URLs can be fetched, not {uri[:200]!r}")
        if not self.allows_path(uri):
            raise PathRefusedError("not under a folder the server may read (LOOKALIKE_INDEX_ROOTS)")
        return read_file(uri, max_bytes=self.max_bytes, timeout_s=self.timeout_s)


def fetch(uri: str, *, max_bytes: int, timeout_s: float, allow_private: bool = False) -> Fetched:
    """The bytes behind ``uri`` (a local path or an http(s) URL) under a policy with these limits."""
    return FetchPolicy(max_bytes=max_bytes, timeout_s=timeout_s, allow_private=allow_private).read(uri)
