"""The seed of every stateful (Hypothesis) test, from the environment variable LOOKALIKE_TEST_SEED.

- unset (CI): each stateful test is derandomized, so every run tries the same sequences;
- a number: every stateful test is seeded with it (the way to replay a run that used ``random``);
- ``random``: a fresh seed for this run, printed in the session's header and summary.

A long run explores new sequences with, for example,
``LOOKALIKE_TEST_SEED=random STORE_EXAMPLES=300 pytest tests/unit/test_store_invariant.py``.

tests/conftest.py reads the variable before it clears ``LOOKALIKE_*`` from the environment. Each
stateful test keeps ``derandomize=True`` in its settings (which also turns the example database
off, so a seed replays exactly) and passes its machine through ``seeded``: Hypothesis prefers a
seed set on the machine class over derandomizing (``run_state_machine_as_test`` copies the class's
``_hypothesis_internal_use_seed``, which ``hypothesis.seed`` sets).
"""

from __future__ import annotations

import os
import secrets
from typing import TypeVar

VARIABLE = "LOOKALIKE_TEST_SEED"

M = TypeVar("M", bound=type)


def _chosen(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if value.lower() == "random":
        return secrets.randbelow(2**32)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{VARIABLE} must be a whole number or 'random', not {value!r}") from None


SEED = _chosen(os.environ.get(VARIABLE))


def seeded(machine: M) -> M:
    """The state machine class, seeded with SEED when one was chosen (else left derandomized)."""
    if SEED is not None:
        import hypothesis  # here, so that conftest's import of this module stays light

        hypothesis.seed(SEED)(machine)
    return machine


def describe() -> str | None:
    """A line for the session's report, when a seed was chosen."""
    if SEED is None:
        return None
    return f"stateful tests seeded with {SEED}: {VARIABLE}={SEED} replays their sequences"
