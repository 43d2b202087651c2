"""An index run through `lookalike serve` reports what one run on its own does: blocked uploads, flags
raised and hash banks' flood alerts come back from the job, not just the counts of stored pictures."""

from __future__ import annotations

from lookalike.remote.client import _report


def test_the_jobs_blocked_flagged_and_alerts_come_back() -> None:
    job = {
        "indexed": 2,
        "already_indexed": 1,
        "crops": 0,
        "blocked": 1,
        "flagged": 2,
        "alerts": ["entry 4 of bank b matched 3 uploads within 1 h (more than 2)"],
        "skipped": [{"uri": "/srv/x.jpg", "reason": "blocked: taken down on 2026-12-07 by ana, flag 1"}],
        "elapsed_s": 0.5,
    }
    report = _report(job)
    assert (report.indexed, report.already_indexed, report.blocked, report.flagged) == (2, 1, 1, 2)
    assert report.alerts == job["alerts"] and report.seen == 4
    assert [(s.uri, s.reason) for s in report.skipped] == [("/srv/x.jpg", job["skipped"][0]["reason"])]
