"""Background jobs (index, scan, duplicates): one at a time, each within a time limit, cancellable.

A job runs in a thread of its own while one queue thread waits for it, up to the job's time
limit or until it is cancelled; then the queue moves on whatever the job does. Python cannot
kill a thread, so a job past its limit is told to stop (its progress callback raises) and its
late result is ignored. Finished jobs, their reports and temp files are kept in bounded number
and for a bounded time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.errors import LookalikeError
from lookalike.ingest import IngestReport
from lookalike.ingest.sources import Skipped

Work = Callable[[Callable[[int], None], Callable[[int], None]], "IngestReport | dict[str, Any]"]
log = logging.getLogger(__name__)
FINISHED = ("done", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside a job's work (from its progress callback) once it is cancelled or out of time."""


@dataclass
class Job:
    id: str
    status: str = "queued"  # queued | running | done | failed | cancelled
    total: int | None = None
    done: int = 0
    indexed: int = 0
    already_indexed: int = 0
    crops: int = 0  # detected objects stored as items (index with detect)
    blocked: int = 0  # refused by a hash bank (among the skipped, with their reasons)
    flagged: int = 0  # flags raised for stored pictures by policies and hash banks
    alerts: list[str] = field(default_factory=list)  # hash banks' floods noticed
    skipped: list[Skipped] = field(default_factory=list)
    error: str | None = None
    kind: str = "index"
    result: dict[str, Any] | None = None  # what a scan or duplicates job found
    report: str | None = None  # the report file a scan or duplicates job writes
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    finished_at: float | None = None  # monotonic, for retention
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    ended: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started


class Jobs:
    """The job queue of one server process.

    Args:
        time_limit_s: how long one job may run before it is stopped and the queue moves on.
        keep: how many finished jobs (and their reports) are kept.
        keep_s: how long a finished job is kept.
    """

    def __init__(self, *, time_limit_s: float = 3600.0, keep: int = 100, keep_s: float = 86400.0) -> None:
        self.time_limit_s = time_limit_s
        self.keep = keep
        self.keep_s = keep_s
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Job, Work]] = queue.Queue()
        self._runner: threading.Thread | None = None

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def submit(
        self,
        work: Work,
        skipped: list[Skipped] | None = None,
        *,
        kind: str = "index",
        report: str | None = None,
    ) -> Job:
        job = Job(id=uuid.uuid4().hex, skipped=list(skipped or []), kind=kind, report=report)
        with self._lock:
            self._prune()
            self._jobs[job.id] = job
            if self._runner is None or not self._runner.is_alive():
                self._runner = threading.Thread(target=self._loop, daemon=True, name="lookalike-jobs")
                self._runner.start()
        self._queue.put((job, work))
        return job

    def cancel(self, job_id: str) -> Job | None:
        """Stop a queued or running job; a finished one is left as it is."""
        job = self.get(job_id)
        if job is None:
            return None
        job.stop.set()
        self._finish(job, "cancelled", "cancelled on request")
        return job

    def _finish(self, job: Job, status: str, error: str | None = None) -> bool:
        """Give a job its final status, once; False if it already had one."""
        with self._lock:
            if job.status in FINISHED:
                return False
            job.status, job.error = status, error
            job.finished = time.perf_counter()
            job.finished_at = time.monotonic()
        job.ended.set()
        return True

    def _loop(self) -> None:
        while True:
            job, work = self._queue.get()
            with self._lock:  # a cancel and the start of a job do not cross
                if job.status in FINISHED:  # cancelled while queued
                    continue
                job.status = "running"
                job.started = time.perf_counter()
            threading.Thread(
                target=self._run, args=(job, work), daemon=True, name=f"job-{job.id[:8]}"
            ).start()
            if not job.ended.wait(self.time_limit_s):
                job.stop.set()
                if self._finish(job, "failed", f"stopped after the time limit of {self.time_limit_s:g} s"):
                    log.error(
                        "job %s (%s) passed its time limit of %g s", job.id, job.kind, self.time_limit_s
                    )

    def _run(self, job: Job, work: Work) -> None:
        def on_start(total: int) -> None:
            job.total = total

        def progress(n: int) -> None:
            if job.stop.is_set():
                raise JobCancelled
            job.done += n

        try:
            report = work(on_start, progress)
        except JobCancelled:
            self._finish(job, "cancelled", "cancelled")
        except LookalikeError as exc:
            log.warning("job %s (%s) failed: %s", job.id, job.kind, exc)
            self._finish(job, "failed", str(exc))
        except Exception as exc:  # a job must end with a status, whatever happened; the log keeps why
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
        else:
            if job.status in FINISHED:  # stopped meanwhile: its late result does not count
                return
            if isinstance(report, IngestReport):
                job.indexed, job.already_indexed = report.indexed, report.already_indexed
                job.crops, job.blocked, job.alerts = report.crops, report.blocked, report.alerts
                job.flagged = report.flagged
                job.skipped.extend(report.skipped)
            else:
                job.result = report
            self._finish(job, "done")

    def _prune(self) -> None:
        """Forget finished jobs beyond the count or age kept, and delete their reports (lock held)."""
        now = time.monotonic()
        finished = sorted(
            (j for j in self._jobs.values() if j.status in FINISHED and j.finished_at is not None),
            key=lambda j: j.finished_at or 0.0,
        )
        excess = len(finished) - self.keep
        for index, job in enumerate(finished):
            if index < excess or now - (job.finished_at or now) > self.keep_s:
                del self._jobs[job.id]
                if job.report:
                    Path(job.report).unlink(missing_ok=True)
