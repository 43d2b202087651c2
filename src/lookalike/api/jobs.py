"""Background indexing jobs, kept in memory for the life of the server process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import LookalikeError
from lookalike.ingest import IngestReport
from lookalike.ingest.sources import Skipped

Work = Callable[[Callable[[int], None], Callable[[int], None]], "IngestReport | dict[str, Any]"]


@dataclass
class Job:
    id: str
    status: str = "queued"
    total: int | None = None
    done: int = 0
    indexed: int = 0
    already_indexed: int = 0
    crops: int = 0  # detected objects stored as items (index with detect)
    skipped: list[Skipped] = field(default_factory=list)
    error: str | None = None
    kind: str = "index"
    result: dict[str, Any] | None = None  # what a scan or duplicates job found
    report: str | None = None  # the report file a scan or duplicates job writes
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started


class Jobs:
    """Runs one job at a time in a worker thread (index, scan, duplicates); the rest wait their turn."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._turn = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

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
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), daemon=True, name=f"index-{job.id[:8]}").start()
        return job

    def _run(self, job: Job, work: Work) -> None:
        def on_start(total: int) -> None:
            job.total = total

        def progress(n: int) -> None:
            job.done += n

        with self._turn:
            job.status = "running"
            try:
                report = work(on_start, progress)
            except LookalikeError as exc:
                job.status, job.error = "failed", str(exc)
            except Exception as exc:  # a job must end with a status, whatever happened
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            else:
                job.status = "done"
                if isinstance(report, IngestReport):
                    job.indexed, job.already_indexed = report.indexed, report.already_indexed
                    job.crops = report.crops
                    job.skipped.extend(report.skipped)
                else:
                    job.result = report
            finally:
                job.finished = time.perf_counter()
