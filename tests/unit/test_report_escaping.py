"""HTML reports escape every value they show: names, sources, labels and uris from outside."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.scan import write_duplicates_report, write_scan_report
from lookalike.scan.duplicates import Group
from lookalike.scan.scan import ScanRow
from lookalike.store import Item

HOSTILE = '<script>alert(1)</script>"\' onerror=alert(2) x="'


def hostile_item(i: int, uri: str) -> Item:
    return Item(i, f"sha{i}", HOSTILE, HOSTILE, HOSTILE, 1_700_000_000, uri, 10, 10, np.zeros(4, np.float32))


def test_reports_escape_every_value_from_outside(tmp_path: Path) -> None:
    items = [
        hostile_item(1, 'https://example.com/a.jpg?x="><script>alert(3)</script>'),
        hostile_item(2, str(tmp_path / "<img src=x onerror=alert(4)>.jpg")),
    ]
    label = "<b>label</b>"
    rows = [ScanRow(item, label, 0.9, {label: 0.9}, (label,)) for item in items]
    write_scan_report(tmp_path / "scan.html", iter(rows), [label], {"sources": [HOSTILE], "since": HOSTILE})
    write_duplicates_report(
        tmp_path / "dups.html", [Group("exact", items, [1.0, 1.0])], {"sources": [HOSTILE]}
    )
    for name in ("scan.html", "dups.html"):
        page = (tmp_path / name).read_text(encoding="utf-8")
        assert "<script>" not in page and "<img src=x" not in page and "<b>label</b>" not in page
        assert '" onerror' not in page and "' onerror" not in page  # no attribute can be broken out of
        assert "&lt;script&gt;" in page
