"""Distinct values with counts (the search page's pickers), and the kept answers of a server store."""

from __future__ import annotations

import threading
import time

import pytest

from lookalike.store import distinct
from lookalike.store.distinct import Distinct, Recent, count_rows, top


def test_top_ranks_by_count_then_value_leaves_out_empty_texts_and_says_when_it_cut() -> None:
    counts = {"b": 2, "a": 2, "c": 5, "": 9, "z": 0}
    assert top(counts, 10) == Distinct((("c", 5), ("a", 2), ("b", 2)), truncated=False)
    assert top(counts, 2) == Distinct((("c", 5), ("a", 2)), truncated=True)
    assert top(counts, 3).truncated is False


def test_count_rows_counts_a_list_fields_value_once_per_row() -> None:
    rows = [
        {"source": "shop", "tags": ["red", "red", "sale"]},
        {"source": "shop", "tags": []},
        {"source": "", "tags": ("red",)},
    ]
    assert count_rows(rows, ["source", "tags"]) == {"source": {"shop": 2}, "tags": {"red": 2, "sale": 1}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(distinct.time, "monotonic", fake)
    return fake


def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the background refresh did not finish"
        time.sleep(0.01)


def test_an_answer_is_kept_fresh_then_given_while_it_refreshes_then_computed_again(clock: Clock) -> None:
    recent = Recent(fresh_s=60, stale_s=600)
    calls: list[int] = []

    def compute() -> int:
        calls.append(len(calls))
        return len(calls)

    assert recent.get("k", compute) == 1
    clock.now += 59
    assert recent.get("k", compute) == 1 and len(calls) == 1  # fresh: not asked again

    clock.now += 2  # stale: the kept answer at once, a refresh behind it
    assert recent.get("k", compute) == 1
    wait_for(lambda: len(calls) == 2)
    wait_for(lambda: recent.get("k", compute) == 2)

    clock.now += 601  # too old to give: computed before answering
    assert recent.get("k", compute) == 3 and len(calls) == 3


def test_forget_drops_the_answers_and_one_computed_across_it_is_not_kept(clock: Clock) -> None:
    recent = Recent(fresh_s=60, stale_s=600)
    assert recent.get("k", lambda: "old") == "old"
    recent.forget()
    assert recent.get("k", lambda: "new") == "new"

    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "before the write"

    reader = threading.Thread(target=lambda: recent.get("other", slow))
    reader.start()
    assert started.wait(10)
    recent.forget()  # a write while it counted
    release.set()
    reader.join(10)
    assert recent.get("other", lambda: "after the write") == "after the write"
