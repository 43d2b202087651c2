"""The banks' in-memory matcher answers what the database holds now, whoever changed it (Hypothesis).

One connection changes the banks (as the CLI would), another one's matcher answers lookups (as a
server would); after every step its answers are checked against a plain-Python model of the banks
compared with every hash. Derandomized unless LOOKALIKE_TEST_SEED says otherwise (tests/seeds.py).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lookalike.scan.hashes import to_bits
from lookalike.workflow import Workflow
from lookalike.workflow.banks import BankAction, BankKind, NewEntry
from tests.seeds import seeded

BANKS = {"flagged": (BankKind.BLOCK, BankAction.FLAG), "refused": (BankKind.BLOCK, BankAction.REFUSE),
         "allowed": (BankKind.ALLOW, BankAction.FLAG)}  # fmt: skip
NAMES = st.sampled_from(sorted(BANKS))


def flipped(value: str, bits: list[int]) -> str:
    number = int(value, 16)
    for bit in bits:
        number ^= 1 << bit
    return format(number, "064x")


class MatcherModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.path = str(Path(tempfile.mkdtemp(prefix="lookalike-matcher-")) / "w.sqlite")
        self.writer = Workflow(self.path)
        self.reader = Workflow(self.path)
        self.reader.banks.matcher.rebuild_at = 3  # rebuild often: deltas, masks and rebuilds all run
        self.entries: dict[int, tuple[str, str]] = {}  # id -> (bank, hash)
        self.banks: dict[str, tuple[bool, int]] = {}  # name -> (enabled, max distance)
        self.seen: list[str] = []

    @rule(name=NAMES, distance=st.integers(0, 40))
    def create(self, name: str, distance: int) -> None:
        if name in self.banks:
            return
        kind, action = BANKS[name]
        self.writer.banks.create(name, kind=kind, action=action, max_distance=distance, by="t")
        self.banks[name] = (True, distance)

    @rule(name=NAMES, seed=st.integers(0, 2**32 - 1), near=st.booleans(), count=st.integers(1, 4))
    def add(self, name: str, seed: int, near: bool, count: int) -> None:
        if name not in self.banks:
            return
        rng = np.random.default_rng(seed)
        values = []
        for _ in range(count):
            if near and self.seen:
                base = self.seen[int(rng.integers(0, len(self.seen)))]
                values.append(
                    flipped(base, rng.choice(256, int(rng.integers(0, 40)), replace=False).tolist())
                )
            else:
                values.append(bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex())
        self.writer.banks.add(name, [NewEntry(v) for v in values], by="t")
        self.seen += values
        self._sync()

    @rule(pick=st.integers(0, 1000))
    def remove(self, pick: int) -> None:
        if not self.entries:
            return
        entry = sorted(self.entries)[pick % len(self.entries)]
        bank, _ = self.entries[entry]
        self.writer.banks.remove(bank, [str(entry)], by="t")
        del self.entries[entry]

    @rule(name=NAMES, enabled=st.booleans())
    def switch(self, name: str, enabled: bool) -> None:
        if name in self.banks:
            self.writer.banks.update(name, enabled=enabled, by="t")
            self.banks[name] = (enabled, self.banks[name][1])

    @rule(name=NAMES, distance=st.integers(0, 48))
    def distance(self, name: str, distance: int) -> None:
        if name in self.banks:
            self.writer.banks.update(name, max_distance=distance, by="t")
            self.banks[name] = (self.banks[name][0], distance)

    @rule()
    def reopen(self) -> None:
        self.reader.close()
        self.reader = Workflow(self.path)

    def _sync(self) -> None:
        self.entries = {}
        for name in self.banks:
            for batch in self.writer.banks.entries(name):
                self.entries.update({e.id: (name, e.pdq) for e in batch})

    def _expected(self, query: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
        block, allow = set(), set()
        for entry, (bank, value) in self.entries.items():
            enabled, limit = self.banks[bank]
            distance = bin(int(value, 16) ^ int(query, 16)).count("1")
            if enabled and distance <= limit:
                (allow if BANKS[bank][0] is BankKind.ALLOW else block).add((entry, distance))
        return (set() if allow else block), allow

    @invariant()
    def answers_what_the_database_holds(self) -> None:
        rng = np.random.default_rng(len(self.seen))
        queries = [
            flipped(v, rng.choice(256, int(rng.integers(0, 45)), replace=False).tolist())
            for v in self.seen[-6:]
        ]
        queries += self.seen + [
            bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex()
        ]  # every hash ever added
        verdicts = self.reader.banks.matcher.snapshot().lookup(to_bits(queries))
        for query, verdict in zip(queries, verdicts, strict=True):
            block, allow = self._expected(query)
            assert {(m.entry, m.distance) for m in verdict.matches} == block
            assert {(m.entry, m.distance) for m in verdict.allowed_by} == allow

    def teardown(self) -> None:
        self.reader.close()
        self.writer.close()


MatcherModel.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, derandomize=True
)
test_the_matcher_matches_its_model = seeded(MatcherModel).TestCase


def test_an_older_workflow_database_gains_the_audit_columns_and_keeps_its_decisions(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:  # the decisions table as the previous version made it
        old.execute(
            "CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, flag INTEGER NOT NULL, item INTEGER NOT"
            " NULL, policy TEXT NOT NULL, label TEXT NOT NULL, decision TEXT NOT NULL, reviewer TEXT NOT NULL,"
            " note TEXT NOT NULL, at INTEGER NOT NULL, took_down INTEGER NOT NULL)"
        )
        old.execute(
            "INSERT INTO decisions VALUES (1, 3, 77, 'p', 'gun', 'confirmed', 'ana', 'n', 1700000000, 1)"
        )
    first, second = Workflow(str(path)), Workflow(str(path))  # two processes opening it at once: one migrates
    [decision] = list(second.decisions())
    assert (decision.item, decision.reviewer, decision.took_down, decision.subject, decision.score) == (
        77, "ana", True, None, None,
    )  # fmt: skip
    assert first.banks.banks() == [] and second.banks.version() == 0
    first.close()
    second.close()
