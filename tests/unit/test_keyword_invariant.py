"""Stateful property test: the keyword index answers exactly what Milvus holds, whatever happened.

The Lite store's own machine (inserts, upserts that move items, deletes, month drops, reopenings,
crashes before a save, writes that fail half-way, foreign writes: tests/unit/test_store_invariant.py)
runs with three more rules (renaming items, purging deleted rows' bytes, losing the read index's
folder so that it is rebuilt from Milvus), and after every step keyword searches (BM25 over name,
category and tags, with and without a window) must equal plain-Python BM25 over the model's items,
and hybrid hits must be live items of the window.
"""

from __future__ import annotations

import dataclasses
import shutil

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from lookalike.store.window import Window
from tests.keyword_model import bm25, check_hits
from tests.seeds import seeded
from tests.store_machine import windows
from tests.store_model import JAN_2024, SOURCES, vector
from tests.unit.test_store_invariant import EXAMPLES, LiteStoreMachine
from tests.unit.test_store_invariant import _graphs_from_a_few_rows as _graphs_from_a_few_rows  # noqa: F401

QUERIES = ("item", "item 3", "v2 shoes", "red sale", "bags", 'a "quoted" tag', "merino 萨摩耶", "7")
WORDS = ("merino", "wool", "萨摩耶", "Levi's", "item", "red")


class KeywordMachine(LiteStoreMachine):
    @rule(data=st.data())
    @precondition(lambda self: self.model.rows)
    def rename(self, data: st.DataObject) -> None:
        """Stored items written again under new names (their terms change, their vectors do not)."""
        chosen = data.draw(
            st.lists(st.sampled_from(sorted(self.model.rows)), min_size=1, max_size=4, unique=True)
        )
        renamed = []
        for item_id in chosen:
            words = data.draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=3))
            stored = self.model.rows[item_id]
            renamed.append(dataclasses.replace(stored, name=" ".join(words), vector=stored.vector))
        self.store.upsert(renamed)
        self.model.upsert(renamed)

    @rule()
    def purge(self) -> None:
        """Deleted rows' bytes leave the files (Milvus and the read index rewrite what held them)."""
        self.store.compact()

    @rule()
    def lose_the_read_index(self) -> None:
        """The read index's folder is deleted while the store is closed: it is rebuilt from Milvus."""
        folder = self.store._folder()
        self.store.close()
        shutil.rmtree(folder, ignore_errors=True)
        self.store = self.open()

    @rule(window=windows, k=st.integers(1, 12), query=st.sampled_from(QUERIES))
    def keywords_in_any_window(self, window: Window, k: int, query: str) -> None:
        inside = self.model.window(window)
        check_hits(
            self.store.keyword_search(query, k=k, window=window), bm25(self.model.rows, inside, query), k
        )
        fused = self.store.hybrid_search(vector(k)[None], query, k=k, window=window)
        assert {hit.item.id for hit in fused} <= {item.id for item in inside}
        assert len(fused) == min(k, len(inside))

    @invariant()
    def keyword_searches_equal_the_model(self) -> None:
        rows = self.model.rows
        for window in (Window(), Window.of(sources=[SOURCES[1]]), Window(since=JAN_2024 + 31 * 86_400)):
            inside = self.model.window(window)
            for query in ("item", "red sale shoes", "merino"):
                check_hits(self.store.keyword_search(query, k=6, window=window), bm25(rows, inside, query), 6)


KeywordMachine.TestCase.settings = settings(
    max_examples=max(4, EXAMPLES // 2),
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_keyword_index_answers_what_milvus_holds = seeded(KeywordMachine).TestCase
