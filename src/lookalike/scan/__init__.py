"""Risk control: zero-shot label scans over stored vectors, reused-image detection, reports."""

from __future__ import annotations

from lookalike.scan.duplicates import Group, find_duplicates, find_hash_duplicates
from lookalike.scan.labels import LabelSet, LabelSpec, Scores, load_labels, parse_labels
from lookalike.scan.report import check_format, write_duplicates_report, write_scan_report
from lookalike.scan.scan import ScanRow, scan

__all__ = [
    "Group",
    "LabelSet",
    "LabelSpec",
    "ScanRow",
    "Scores",
    "check_format",
    "find_duplicates",
    "find_hash_duplicates",
    "load_labels",
    "parse_labels",
    "scan",
    "write_duplicates_report",
    "write_scan_report",
]
