"""A model's first use on a machine, out of the user's way: the ONNX export and the runtime probe run in
a background process while the command that needed the model goes on with PyTorch fp32.

Exporting ViT-B-32, quantising it twice and measuring seven runtimes took 250 s on a 2-core CPU; a
first query must not wait for it. ``start`` launches ``python -m lookalike.embed.background`` once per
model and machine, at a low priority, its progress notes written to a log; the worker loads the model
with ``probe="now"``, which exports, probes, and writes the probe cache and the tower manifest that
later commands load (``exported.py``). The worker holds a lock for as long as it runs (an ``flock``
its starter hands it, released by the kernel however it ends), so a second command only says it is
still running. A worker that failed leaves a mark beside its log and is not started again for a day.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("lookalike.embed.runtimes")

RETRY_AFTER_FAILURE_S = 86400.0
NICENESS = 10


@dataclass(frozen=True)
class Job:
    """What the worker loads: the embedder's own arguments."""

    model: str
    pretrained: str
    runtime: str
    device: str
    cache_dir: str
    text_threads: int


@dataclass(frozen=True)
class Files:
    """The lock (its content: the worker's pid), the log and the failure mark of one model here."""

    lock: Path
    log: Path
    failed: Path

    @classmethod
    def of(cls, cache_dir: str | Path, key: str) -> Files:
        folder = Path(cache_dir) / "probing"
        return cls(folder / f"{key}.lock", folder / f"{key}.log", folder / f"{key}.failed")


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the lock, or None where a worker holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _worker_pid(files: Files) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return files.lock.read_text(encoding="utf-8").strip() or "?"
    return "?"


def start(job: Job, key: str, label: str) -> int | None:
    """Start the worker for this model unless one runs (or failed lately); its pid, or None. Says what
    happens on the runtimes logger either way."""
    files = Files.of(job.cache_dir, key)
    try:
        files.lock.parent.mkdir(parents=True, exist_ok=True)
        fd = _try_lock(files.lock)
    except OSError as exc:  # a read-only cache: this process runs on PyTorch, later ones too
        log.warning("cannot start the runtime probe of %s (%s): running on PyTorch fp32", label, exc)
        return None
    if fd is None:
        log.warning(
            "%s runs on PyTorch fp32 while its ONNX export and runtime probe go on in the background "
            "(pid %s; progress in %s)",
            label,
            _worker_pid(files),
            files.log,
        )
        return None
    try:
        if files.failed.is_file() and time.time() - files.failed.stat().st_mtime < RETRY_AFTER_FAILURE_S:
            log.warning(
                "%s runs on PyTorch fp32: its ONNX export and runtime probe failed in the background (see "
                "%s; delete %s to try again)",
                label,
                files.log,
                files.failed,
            )
            return None
        with open(files.log, "ab") as output:
            worker = subprocess.Popen(
                [sys.executable, "-m", "lookalike.embed.background", json.dumps(asdict(job)), key],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),  # the worker holds the lock from here until it ends
                start_new_session=True,  # not ended with the command, nor by its Ctrl-C
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(worker.pid).encode(), 0)
    finally:
        os.close(fd)
    log.warning(
        "first use of %s on this machine: running on PyTorch fp32 now, while the ONNX export and the "
        "runtime probe run in the background (pid %d; progress in %s); later commands take the fastest "
        "runtime",
        label,
        worker.pid,
        files.log,
    )
    return worker.pid


def running(cache_dir: str | Path, key: str) -> bool:
    """Whether a worker for this model runs now."""
    files = Files.of(cache_dir, key)
    if not files.lock.is_file():
        return False
    fd = _try_lock(files.lock)
    if fd is None:
        return True
    os.close(fd)
    return False


def main(argv: list[str]) -> int:
    """The worker (``argv``: the job as JSON, the model's key): load the model with the probe run now,
    its progress notes on stderr (the log)."""
    from lookalike.embed.openclip import OpenClipEmbedder

    job, files = Job(**json.loads(argv[0])), Files.of(json.loads(argv[0])["cache_dir"], argv[1])
    with contextlib.suppress(OSError):
        os.nice(NICENESS)  # the user's commands come first
    # The libraries' own notes (open_clip's "initialized randomly") stay out of the log: a root
    # handler keeps logging from configuring one that prints them.
    logging.getLogger().addHandler(logging.NullHandler())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    log.warning(
        "pid %d: exporting and probing %s (%s), --runtime %s",
        os.getpid(),
        job.model,
        job.pretrained,
        job.runtime,
    )
    try:
        embedder = OpenClipEmbedder(
            job.model,
            job.pretrained,
            job.device,
            runtime=job.runtime,
            cache_dir=job.cache_dir,
            text_threads=job.text_threads,
            probe="now",
        )
        embedder.load()
        choice = embedder.runtime_choice
    except BaseException:  # whatever it was goes to the log, and the mark stops the next tries
        log.error("failed:\n%s", traceback.format_exc())
        with contextlib.suppress(OSError):
            files.failed.touch()
        return 1
    with contextlib.suppress(OSError):
        files.failed.unlink(missing_ok=True)
    log.warning("done: images on %s, texts on %s", choice["image"], choice["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
