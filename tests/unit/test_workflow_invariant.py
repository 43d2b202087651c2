"""The workflow database against a plain-Python model: flags, reviews, reopening, hashes (Hypothesis).

Derandomized unless LOOKALIKE_TEST_SEED gives a seed or asks for a random one (tests/seeds.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lookalike.workflow import FlagStatus, NewFlag, Workflow
from tests.seeds import seeded

ITEMS = st.integers(min_value=1, max_value=12)
LABELS = st.sampled_from(["gun", "drug", "logo"])
POLICIES = st.sampled_from(["p1", "p2"])


class WorkflowModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="lookalike-workflow-")
        self.path = str(Path(self.folder) / "w.sqlite")
        self.db = Workflow(self.path)
        self.flags: dict[tuple[int, str, str], FlagStatus] = {}
        self.ids: dict[tuple[int, str, str], int] = {}
        self.audit: list[tuple[int, FlagStatus, str]] = []
        self.hashes: dict[int, str] = {}

    @rule(item=ITEMS, policy=POLICIES, label=LABELS, score=st.floats(-1, 1))
    def flag(self, item: int, policy: str, label: str, score: float) -> None:
        added = self.db.add_flags([NewFlag(item, policy, label, score)])
        key = (item, policy, label)
        # New, or closed because its item went away and now stored and flagged again: open.
        assert added == (0 if key in self.flags and self.flags[key] is not FlagStatus.CLOSED else 1)
        if added:
            self.flags[key] = FlagStatus.OPEN

    @rule(
        pick=st.integers(min_value=0, max_value=100),
        decision=st.sampled_from([FlagStatus.CONFIRMED, FlagStatus.DISMISSED]),
        # Any name a reviewer may have (workflow/claims.py check_reviewer): no control characters, not blank.
        who=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=5).filter(
            str.strip
        ),
    )
    def review(self, pick: int, decision: FlagStatus, who: str) -> None:
        if not self.flags:
            return
        key = sorted(self.flags)[pick % len(self.flags)]
        flag_id = self.ids[key]
        self.db.review([flag_id], decision, reviewer=who, note=f"n{pick}")
        self.flags[key] = decision
        self.audit.append((flag_id, decision, who))

    @rule(items=st.lists(ITEMS, max_size=3), note=st.sampled_from(["item deleted", "swept"]))
    def gone(self, items: list[int], note: str) -> None:
        """Items deleted: their open flags close (one audit record each), their hashes go."""
        records = self.db.items_gone(items, note)
        closing = sorted(self.ids[k] for k, s in self.flags.items() if k[0] in items and s is FlagStatus.OPEN)
        assert [r.flag for r in records] == closing
        for key in self.flags:
            if key[0] in items and self.flags[key] is FlagStatus.OPEN:
                self.flags[key] = FlagStatus.CLOSED
        self.audit += [(flag, FlagStatus.CLOSED, "system") for flag in closing]
        for item in items:
            self.hashes.pop(item, None)

    @rule(item=ITEMS, bits=st.binary(min_size=32, max_size=32))
    def hash(self, item: int, bits: bytes) -> None:
        self.db.put_hashes({item: (bits.hex(), 100)})
        self.hashes[item] = bits.hex()

    @rule(item=ITEMS)
    def forget(self, item: int) -> None:
        self.db.forget_hashes([item])
        self.hashes.pop(item, None)

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = Workflow(self.path)

    @invariant()
    def matches_the_model(self) -> None:
        stored = {(f.item, f.policy, f.label): f for f in self.db.flags()}
        assert {k: f.status for k, f in stored.items()} == self.flags
        for key, flag in stored.items():
            assert self.ids.setdefault(key, flag.id) == flag.id  # an id never changes
        assert [(d.flag, d.decision, d.reviewer) for d in self.db.decisions()] == self.audit
        assert {i: h for i, (h, _) in self.db.hashes().items()} == self.hashes
        for status in FlagStatus:
            assert self.db.count_flags(status=status) == sum(1 for s in self.flags.values() if s is status)

    def teardown(self) -> None:
        self.db.close()


WorkflowModel.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None, derandomize=True
)
test_workflow_matches_its_model = seeded(WorkflowModel).TestCase


def test_an_old_workflow_database_opens_and_gains_missing_tables(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:  # as if a version had only policies
        old.execute(
            "CREATE TABLE policies (name TEXT PRIMARY KEY, labels TEXT NOT NULL, created_at INTEGER NOT NULL)"
        )
        old.execute("INSERT INTO policies VALUES ('kept', '[labels.a]', 1)")
    db = Workflow(str(path))
    assert [p.name for p in db.policies()] == ["kept"] and db.hashes() == {} and db.flags() == []
    db.close()


def test_the_workflow_database_lies_beside_a_lite_file_and_per_user_for_a_server(tmp_path: Path) -> None:
    from lookalike.config import load_settings

    lite = load_settings(db=str(tmp_path / "shop.db"), collection="images")
    assert lite.workflow_path() == f"{tmp_path / 'shop.db'}.images.workflow.sqlite"
    one = load_settings(db="http://milvus-a:19530", collection="images", data_dir=str(tmp_path))
    two = load_settings(db="http://milvus-b:19530", collection="images", data_dir=str(tmp_path))
    assert (
        one.workflow_path().startswith(str(tmp_path / "workflow"))
        and one.workflow_path() != two.workflow_path()
    )
    assert load_settings(db="http://x:1", workflow_db=str(tmp_path / "w.sqlite")).workflow_path() == str(
        tmp_path / "w.sqlite"
    )
