"""The API's job queue: a stuck job does not block it, jobs can be cancelled, finished jobs are not
kept forever, and a failed job's traceback reaches the log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lookalike.api.jobs import Job, Jobs
from lookalike.ingest import IngestReport

Progress = Callable[[int], None]


def finished(job: Job, seconds: float = 10) -> Job:
    assert job.ended.wait(seconds), f"job {job.id} still {job.status} after {seconds} s"
    return job


def settled(job: Job, seconds: float = 10) -> None:
    """Wait until the job's own thread has returned (a job stopped early may still be running)."""
    for thread in threading.enumerate():
        if thread.name == f"job-{job.id[:8]}":
            thread.join(seconds)
            assert not thread.is_alive(), f"job {job.id}'s work still runs after {seconds} s"


def quick(on_start: Progress, progress: Progress) -> IngestReport:
    on_start(1)
    progress(1)
    return IngestReport(seen=1, indexed=1)


def test_a_stuck_job_is_stopped_at_its_time_limit_and_the_queue_moves_on() -> None:
    jobs = Jobs(time_limit_s=0.5)
    release = threading.Event()

    def stuck(on_start: Progress, progress: Progress) -> IngestReport:
        release.wait(30)  # blocked somewhere that never calls back, like a hung read
        return IngestReport()

    first = jobs.submit(stuck)
    second = jobs.submit(quick)
    started = time.monotonic()
    assert finished(second).status == "done" and second.indexed == 1
    assert time.monotonic() - started < 5
    assert first.status == "failed" and "time limit" in (first.error or "")
    release.set()
    settled(first)  # its work has returned a report...
    assert first.status == "failed"  # ...which does not count


def test_a_running_job_is_cancelled_and_stops_at_its_next_step() -> None:
    jobs = Jobs(time_limit_s=30)
    steps = []

    def long(on_start: Progress, progress: Progress) -> IngestReport:
        on_start(1000)
        for _ in range(1000):
            time.sleep(0.01)
            progress(1)
            steps.append(1)
        return IngestReport()

    job = jobs.submit(long)
    queued = jobs.submit(quick)
    while job.status != "running" or not steps:
        time.sleep(0.01)
    assert jobs.cancel(job.id) is job
    assert job.status == "cancelled"
    assert finished(queued).status == "done"
    count = len(steps)
    settled(job)  # the work returns (1000 steps would take 10 s)...
    assert len(steps) <= count + 1  # ...at its next progress call
    assert jobs.cancel("no-such-job") is None


def test_a_queued_job_cancelled_never_runs() -> None:
    jobs = Jobs(time_limit_s=30)
    gate = threading.Event()
    ran = []

    def blocker(on_start: Progress, progress: Progress) -> IngestReport:
        gate.wait(10)
        return IngestReport()

    def never(on_start: Progress, progress: Progress) -> IngestReport:
        ran.append(True)
        return IngestReport()

    first = jobs.submit(blocker)
    second = jobs.submit(never)
    third = jobs.submit(quick)
    jobs.cancel(second.id)
    gate.set()
    finished(first)
    finished(third)  # the queue runs in order: the cancelled job's turn has passed
    assert second.status == "cancelled" and ran == []


def test_finished_jobs_and_their_reports_are_kept_in_bounded_number_and_time(tmp_path: Path) -> None:
    jobs = Jobs(keep=3, keep_s=3600)
    reports = []
    for i in range(6):
        report = tmp_path / f"report-{i}.json"
        report.write_text("{}")
        reports.append(report)

        def work(on_start: Progress, progress: Progress, i: int = i) -> dict[str, Any]:
            return {"n": i}

        finished(jobs.submit(work, kind="scan", report=str(report)))
    jobs.get("anything")  # retention is applied on every look-up and submit
    assert len(jobs) == 3
    assert [r.exists() for r in reports] == [False, False, False, True, True, True]
    aged = Jobs(keep=100, keep_s=0.2)
    old = finished(aged.submit(quick))
    time.sleep(0.3)
    assert aged.get(old.id) is None


def test_a_failed_job_logs_its_traceback() -> None:
    from tests.helpers import captured_logs

    jobs = Jobs()

    def broken(on_start: Progress, progress: Progress) -> IngestReport:
        raise KeyError("the missing piece")

    with captured_logs("lookalike.api.jobs") as records:
        job = finished(jobs.submit(broken))  # the traceback is logged before the job ends
    assert job.status == "failed" and "KeyError" in (job.error or "")
    (record,) = [r for r in records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and "the missing piece" in str(record.exc_info[1])
