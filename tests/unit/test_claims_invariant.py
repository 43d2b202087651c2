"""Claims against a plain-Python model (Hypothesis): random claims, renewals, releases, skips, closes,
time passing and reopenings; after every step the database holds exactly the model's live claims.

Derandomized unless LOOKALIKE_TEST_SEED gives a seed or asks for a random one (tests/seeds.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lookalike.errors import ClaimedError, ConfigError
from lookalike.workflow import NewFlag, Workflow
from tests.seeds import seeded

FLAGS = st.integers(min_value=1, max_value=6)
WHO = st.sampled_from(["ana", "bo", "cy"])
LEASES = st.sampled_from([10.0, 60.0, 300.0])
T0 = 1_800_000_000.0


class ClaimsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.path = str(Path(tempfile.mkdtemp(prefix="lookalike-claims-")) / "w.sqlite")
        self.db = Workflow(self.path)
        self.db.add_flags([NewFlag(item, "p", "l", 0.5) for item in range(1, 7)])  # flag n is item n
        self.now = T0
        self.open = set(range(1, 7))
        self.claims: dict[int, tuple[str, float]] = {}  # flag -> (reviewer, expires)

    def live(self) -> dict[int, tuple[str, float]]:
        return {f: c for f, c in self.claims.items() if c[1] > self.now}

    def holder(self, flag: int) -> str | None:
        held = self.live().get(flag)
        return held[0] if held else None

    def take(self, flag: int, who: str, lease: float) -> None:
        self.claims = {f: c for f, c in self.claims.items() if c[0] != who or f == flag}
        self.claims[flag] = (who, self.now + lease)

    @rule(who=WHO, lease=LEASES, skip=st.booleans())
    def next(self, who: str, lease: float, skip: bool) -> None:
        mine = sorted(f for f, c in self.live().items() if c[0] == who and f in self.open)
        after = mine[0] if skip and mine else None
        found = self.db.claims.next(who, lease_s=lease, after=after, now=self.now)
        free = sorted(f for f in self.open if self.holder(f) in (None, who))
        if after is None and mine:
            expected: int | None = mine[0]  # a reviewer's own flag first
        else:
            later = [f for f in free if after is None or f > after]
            expected = (later or free or [None])[0]
        assert (found[0].id if found else None) == expected
        if expected is not None:
            self.take(expected, who, lease)

    @rule(flag=FLAGS, who=WHO, lease=LEASES)
    def claim(self, flag: int, who: str, lease: float) -> None:
        holder = self.holder(flag)
        try:
            self.db.claims.claim(flag, who, lease_s=lease, now=self.now)
        except ClaimedError:
            assert holder not in (None, who)
            return
        except ConfigError:
            assert flag not in self.open
            return
        assert holder in (None, who) and flag in self.open
        self.take(flag, who, lease)

    @rule(flag=FLAGS, who=WHO)
    def release(self, flag: int, who: str) -> None:
        holder = self.holder(flag)
        try:
            released = self.db.claims.release(flag, who, now=self.now)
        except ClaimedError:
            assert holder not in (None, who)
            return
        # An expired claim of one's own is let go too.
        assert released == (flag in self.claims and self.claims[flag][0] == who)
        if released:
            del self.claims[flag]

    @rule(flag=FLAGS)
    def close(self, flag: int) -> None:
        """The item went away: its flag closes whoever holds it, and its claim goes."""
        self.db.items_gone([flag], "item deleted")
        self.open.discard(flag)
        self.claims.pop(flag, None)

    @rule(seconds=st.sampled_from([1.0, 9.0, 59.0, 400.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = Workflow(self.path)

    @invariant()
    def matches_the_model(self) -> None:
        held = self.db.claims.holders(list(range(1, 7)), now=self.now)
        assert {f: c.reviewer for f, c in held.items()} == {f: c[0] for f, c in self.live().items()}
        assert all(held[f].expires_at == c[1] for f, c in self.live().items())
        # Never two live claims for one reviewer.
        reviewers = [c.reviewer for c in held.values()]
        assert len(reviewers) == len(set(reviewers))

    def teardown(self) -> None:
        self.db.close()


ClaimsModel.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, derandomize=True
)
test_claims_match_their_model = seeded(ClaimsModel).TestCase
