"""Long first-use steps (the ONNX export, quantisation, compiling, the runtime probe) say what they do,
and keep saying it every few seconds until they are done: a user never watches a silent terminal.

The notes go out under the runtimes logger, which the CLI shows on stderr (``cli/common.py``) and a
background probe writes to its log.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

log = logging.getLogger("lookalike.embed.runtimes")

HEARTBEAT_S = 3.0
_speaking = threading.local()  # set while a note is written, so that only_notes_on_stderr lets it through
_running: list[object] = []  # the steps under way, innermost last: only the innermost keeps talking


def _say(message: str, *args: object) -> None:
    _speaking.on = True
    try:
        log.warning(message, *args)
    finally:
        _speaking.on = False


@contextlib.contextmanager
def step(what: str, every_s: float = HEARTBEAT_S, *, quiet: bool = False) -> Iterator[None]:
    """Say ``what`` now, that it is still going every ``every_s`` seconds, and how long it took.

    ``quiet``: a step that is usually short (loading a model) says nothing unless it lasts longer
    than ``every_s``; then it too says that it is still going, and when it is done.
    """
    started = time.perf_counter()
    if not quiet:
        _say("%s …", what)
    stop = threading.Event()
    said = threading.Event()
    me = object()

    def beat() -> None:
        while not stop.wait(every_s):
            if _running and _running[-1] is me:
                _say("… %s (%.0f s)", what, time.perf_counter() - started)
                said.set()

    _running.append(me)
    thread = threading.Thread(target=beat, name="lookalike-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _running.remove(me)
    if not quiet or said.is_set():
        _say("%s: done in %.1f s", what, time.perf_counter() - started)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Drop the pages of notes the exporter and the quantiser log (through the root logger and their
    own) while a step runs, and keep lookalike's own notes: a filter on every handler that could
    print them, instead of ``logging.disable``, which would silence the progress notes too."""

    def ours(record: logging.LogRecord) -> bool:
        return record.name.startswith("lookalike")

    handlers = [*logging.getLogger().handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        handler.addFilter(ours)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(ours)


class _NotesOnly(io.TextIOBase):
    """A stderr that lets through only the progress notes."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if getattr(_speaking, "on", False):
            self._target.write(text)
            self._target.flush()
        return len(text)


@contextlib.contextmanager
def only_notes_on_stderr() -> Iterator[None]:
    """While a library that prints pages (the ONNX exporter) runs: its writes to ``sys.stderr`` are
    dropped, the progress notes still get through."""
    with contextlib.redirect_stderr(_NotesOnly(sys.stderr)):
        yield
