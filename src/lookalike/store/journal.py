"""The write journal of the Lite store: which ids each write touches, recorded before Milvus sees it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookalike.durable import crash_point


class Journal:
    """An append-only file of writes since the read index was last saved (cleared by each save)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, start: int, seqs: int, ids: Sequence[int]) -> None:
        """Record, durably, a write from generation ``start`` planned to take ``seqs`` sequence numbers."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"from": start, "seqs": seqs, "ids": [int(i) for i in ids]}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("journal.noted")

    def since(self, generation: int) -> list[dict[str, Any]]:
        """The writes that started at or after ``generation`` (those the read index may lack)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        entries: list[dict[str, Any]] = []
        for line in lines:
            try:
                entry = json.loads(line)
                entries.append(
                    {"from": int(entry["from"]), "seqs": int(entry["seqs"]), "ids": list(entry["ids"])}
                )
            except (ValueError, TypeError, KeyError):
                continue  # a line torn by a crash: its write never reached Milvus
        return [entry for entry in entries if entry["from"] >= generation]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def chained(pending: list[dict[str, Any]], start: int, seq: int) -> bool:
    """Whether journaled writes, one after another from ``start``, account for Milvus being at ``seq``.

    Every write but the last completed (one that failed was repaired, and the journal
    cleared, before the next began); the last may have stopped part-way.
    """
    at = start
    for entry in pending:
        if entry["from"] != at:
            return False
        at = entry["from"] + entry["seqs"]
    return bool(pending) and pending[-1]["from"] <= seq <= at
