"""Every write path killed with SIGKILL at its durable steps and at random instants (a bounded slice).

Three rounds per write path: two durable steps drawn from those a whole run passes, and one
random instant. ``LOOKALIKE_CRASH_SEED`` picks other draws; ``scripts/crash_harness.py`` runs
hundreds of rounds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.crash import harness

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("LOOKALIKE_CRASH_SEED", "26"))
ROUNDS = int(os.environ.get("LOOKALIKE_CRASH_ROUNDS", "3"))


@pytest.fixture(scope="module")
def base(tiny_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> harness.Base:
    return harness.build_base(tmp_path_factory.mktemp("crash-base"), tiny_model)


@pytest.mark.parametrize("name", list(harness.SCENARIOS))
def test_a_kill_at_any_instant_loses_nothing(name: str, base: harness.Base, tmp_path: Path) -> None:
    scenario = harness.SCENARIOS[name]
    rng = random.Random(f"{SEED}:{name}")
    counts, took = harness.steps_of(scenario, base, tmp_path)
    assert counts, f"{name} passed no durable step: the crash points are not reached"
    steps = [
        f"{step}:{rng.randint(1, count)}" for step, count in rng.sample(counts, min(len(counts), ROUNDS - 1))
    ]
    rounds = [harness.play(scenario, base, tmp_path, step=step) for step in steps]
    rounds.append(harness.play(scenario, base, tmp_path, delay=rng.uniform(*harness.instants(took))))
    failed = [f"{r.step} ({r.outcome}): " + "; ".join(r.problems) for r in rounds if r.problems]
    assert not failed, f"seed {SEED}, {name}:\n" + "\n".join(failed)
    assert any(r.outcome == "killed" for r in rounds), f"no round of {name} was killed: {rounds}"
