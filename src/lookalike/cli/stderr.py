"""Keep gRPC's C-core chatter off the user's terminal.

grpcio writes its core's log lines (``Got goaway ... too_many_pings``) to file descriptor 2
itself, whatever Python's logging says, and ``GRPC_VERBOSITY=NONE`` no longer silences them
(grpcio 1.85 logs through absl). A command process therefore routes fd 2 through a pipe and
drops those lines; everything else reaches stderr unchanged, and is flushed before exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

_CHATTER = (b"chttp2_transport.cc", b"too_many_pings", b"absl::InitializeLog()")
_installed = False


def is_chatter(line: bytes) -> bool:
    return any(marker in line for marker in _CHATTER)


def filter_grpc_chatter() -> None:
    """Route this process's fd 2 through a filter (once; only when sys.stderr is fd 2 itself)."""
    global _installed
    if _installed:
        return
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):
        return  # captured (tests, CliRunner): nothing of gRPC's reaches this stream
    _installed = True
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pump, args=(read_end, original), name="stderr-filter", daemon=True)
    pump.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the pump reads to the end and stops
        pump.join(timeout=5)

    atexit.register(restore)


def _pump(read_end: int, target_fd: int) -> None:
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as source:
        while chunk := source.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            _write(target_fd, b"".join(line + b"\n" for line in lines if not is_chatter(line)))
    if pending and not is_chatter(pending):
        _write(target_fd, pending)


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
