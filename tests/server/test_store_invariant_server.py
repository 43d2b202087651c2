"""Stateful property test on a real Milvus server: every read of ServerStore answers what Milvus holds.

The rules and checks of the Lite run (tests/store_machine.py: inserts, upserts that move items
between months and sources, deletes, partition drops, reopenings, and reads of random windows,
with Milvus, counts, gets, iteration and searches checked against the model after every step)
run against ``open_store(server URI)``, plus flushes, which seal the growing segments, so that
reads meet sealed segments and the deletes that hit them.

CI runs a few short, derandomized examples (each is a collection on the session's server), and
a failure is reported as generated, not shrunk (shrinking against a server takes many minutes);
STORE_EXAMPLES raises the number, LOOKALIKE_TEST_SEED=random explores new sequences and prints
the seed, LOOKALIKE_TEST_SEED=<n> replays them (tests/seeds.py).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import rule, run_state_machine_as_test

from lookalike.store import Store, grouping, open_store
from tests.seeds import seeded
from tests.server.harness import MilvusServer
from tests.store_machine import StoreMachine

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

EXAMPLES = int(os.environ.get("STORE_EXAMPLES", "3"))
STEPS = 12  # each step is ~10 strong reads of ~0.2 s: 3 examples take about a minute


class ServerStoreMachine(StoreMachine):
    uri = ""  # the session server's, set by the test below
    _other: Any = None

    def open(self) -> Store:
        return open_store(self.uri, self.name)

    def milvus_ids(self) -> set[int]:
        if self._other is None:
            from pymilvus import MilvusClient

            self._other = MilvusClient(uri=self.uri)
        rows = self._other.query(
            self.name,
            filter="id >= -9223372036854775807",
            output_fields=["id"],
            limit=16384,
            consistency_level="Strong",
        )
        return {int(row["id"]) for row in rows}

    @rule()
    def flush(self) -> None:
        self.store.flush()

    def teardown(self) -> None:
        super().teardown()
        if self._other is not None:
            self._other.close()


def test_server_store_answers_what_milvus_holds(
    milvus_server: MilvusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ServerStoreMachine.uri = milvus_server.uri
    # A grouped search over-fetches 4 × 64 pictures: a few here, so that its refills are exercised.
    monkeypatch.setattr(grouping, "MIN_FETCH", 1)
    monkeypatch.setattr(grouping, "OVERFETCH", 1)
    run_state_machine_as_test(
        seeded(ServerStoreMachine),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],  # shrinking against a server takes many minutes
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
