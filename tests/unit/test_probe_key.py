"""The probe cache's name: the same for every thread of a process (a server loads models on workers)."""

from __future__ import annotations

import threading

import pytest
import torch

from lookalike.embed.probe import machine_key


def test_the_machine_key_is_the_same_on_a_thread_whose_openmp_count_differs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OpenMP keeps its thread count per thread: a library that sets it on the main thread (FAISS,
    # a runtime) leaves new threads on the default. CI met this as a probe written under one name
    # and looked for under another.
    main_thread = threading.get_ident()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1 if threading.get_ident() == main_thread else 2)
    main = machine_key()
    seen: list[str] = []
    worker = threading.Thread(target=lambda: seen.append(machine_key()))
    worker.start()
    worker.join(timeout=60)
    assert seen == [main]
