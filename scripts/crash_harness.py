"""The long run of the crash-injection harness: hundreds of SIGKILLs over every write path.

    python scripts/crash_harness.py --rounds 300                 # every durable step, then random instants
    python scripts/crash_harness.py --rounds 40 --seed 7 --scenario "delete --purge" --scenario compact

Builds the tiny open_clip model and the base database (tests/crash/harness.py) in a temporary
folder, lists the durable steps each write path passes (a run with LOOKALIKE_CRASH_AT=list),
then plays the rounds: half kill at a durable step (each step's first and last occurrence, then
random ones), half at a random instant of the run. Each round checks every invariant after the
kill and again after the write runs whole. Prints one line a round and the tally, with the CPU
and load average; exits 1 if any round found a problem.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    parser.add_argument("--scenario", action="append", help="only these write paths (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)

    from tests.crash import harness
    from tests.helpers import build_tiny_model

    from lookalike.embed.probe import cpu_info

    names = args.scenario or list(harness.SCENARIOS)
    unknown = set(names) - set(harness.SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {list(harness.SCENARIOS)}")
    scratch = Path(tempfile.mkdtemp(prefix="lookalike-crash-"))
    model = build_tiny_model(scratch / "model")
    print(f"# seed {seed}, {args.rounds} rounds over {len(names)} write paths, scratch {scratch}", flush=True)
    print(f"# CPU {cpu_info()[0] or '?'}, load average {os.getloadavg()}", flush=True)
    base = harness.build_base(scratch / "base", model)
    steps = {}
    for name in names:
        steps[name] = harness.steps_of(harness.SCENARIOS[name], base, scratch)
        counts, took = steps[name]
        listed = ", ".join(f"{step}×{count}" for step, count in counts)
        print(f"# {name}: {took:.1f} s whole; steps {listed}", flush=True)
    plan = harness.plan_rounds(steps, args.rounds, rng)
    tally: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    failures = []
    started = time.monotonic()
    for number, (name, step, delay) in enumerate(plan, 1):
        result = harness.play(harness.SCENARIOS[name], base, scratch, step=step, delay=delay)
        kind = "step" if step else "random"
        outcomes[f"{kind} {result.outcome}"] += 1
        tally["failed" if result.problems else "passed"] += 1
        verdict = "FAIL " + " | ".join(result.problems) if result.problems else "ok"
        print(
            f"{number:4d} {name:20s} {result.step:36s} {result.outcome:8s} {result.seconds:5.1f}s {verdict}",
            flush=True,
        )
        if result.problems:
            failures.append(result)
    minutes = (time.monotonic() - started) / 60
    print(
        f"# {tally['passed']} passed, {tally['failed']} failed of {len(plan)} rounds in {minutes:.1f} min (seed {seed})"
    )
    print("# " + ", ".join(f"{key}: {n}" for key, n in sorted(outcomes.items())))
    print(f"# load average {os.getloadavg()}")
    if not args.keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
