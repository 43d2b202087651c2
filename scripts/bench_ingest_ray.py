"""Ingest images/s of the local runner and of ``index --ray`` with 1 and 2 actors, on the same folders.

    PYTHONPATH=src python scripts/bench_ingest_ray.py [--images 32] [--rounds 1] [--tiny]

Each run indexes a generated folder (product-photo-like JPEGs, bench.generate_photos) into a fresh
Milvus Lite database through the use case ``lookalike index FOLDER [--ray --actors N]`` runs, in a
process of its own; a --ray run starts its own local Ray instance on this machine. Every runner
indexes two folders, of ``--images`` and of three times as many, so that its fixed cost (for --ray:
starting Ray, the actors and a model in each) and its marginal rate (images/s once running, what
matters at millions of images) are told apart:

    marginal images/s = (3N - N) / (time for 3N - time for N)      fixed s = time for N - N / marginal

"time" is the report's (from the first listed image to the last write; the local runner loads its
model before its clock starts, the --ray actors after). The model is ViT-B-32 with random weights by
default (no hub is reachable here; the compute is the real model's) on the PyTorch runtime for every
run; ``--tiny`` uses the tests' tiny model, where the runners' own costs dominate. Prints the table,
Ray's overhead (1 actor against the local runner, marginal images/s), the CPU and the load average.
Rounds alternate the order of the runs, so that a machine growing busier favours none.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
from lookalike.config import Settings
from lookalike.usecases import ingest
from lookalike.usecases.context import Context

folder, db, actors = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = Context(Settings(db=db))
on_ray = ingest.OnRay(actors=actors) if actors else None
try:
    report = ingest.index(ctx, folder, source="bench", on_ray=on_ray)
finally:
    ctx.close()
print(json.dumps({"elapsed_s": report.elapsed_s, "indexed": report.indexed}))
"""

RUNS = (("local runner", 0), ("--ray, 1 actor", 1), ("--ray, 2 actors", 2))


def run_once(folder: Path, work: Path, env: dict[str, str], actors: int) -> dict[str, float]:
    db = tempfile.mkdtemp(dir=work) + "/bench.db"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), db, str(actors)],
        env={**env, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the run with {actors} actors failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_s"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=32, help="the small folder; the large has 3 times as many"
    )
    parser.add_argument("--size", type=int, default=800, help="side of each generated JPEG in pixels")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model instead of ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="start with the reversed order (to pair with a run without it when rounds are long)",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from lookalike.bench import cpu_model, generate_photos

    sizes = (args.images, 3 * args.images)
    with tempfile.TemporaryDirectory(prefix="lookalike-ray-bench-") as tmp:
        work = Path(tmp)
        if args.tiny:
            sys.path.insert(0, str(ROOT))
            from tests.helpers import build_tiny_model

            config, checkpoint = build_tiny_model(work / "model")
            model, pretrained = str(config), str(checkpoint)
        else:
            model, pretrained = "ViT-B-32", "random"
        folders = {size: work / f"photos-{size}" for size in sizes}
        for size, folder in folders.items():
            generate_photos(folder, size, args.size)
        env = {
            **os.environ,
            "LOOKALIKE_MODEL": model,
            "LOOKALIKE_PRETRAINED": pretrained,
            "LOOKALIKE_RUNTIME": "torch",
            "LOOKALIKE_BATCH_SIZE": str(args.batch_size),
            "HF_HUB_OFFLINE": "1",
        }
        elapsed: dict[tuple[str, int], list[float]] = {(label, n): [] for label, _ in RUNS for n in sizes}
        walls: dict[tuple[str, int], list[float]] = {key: [] for key in elapsed}
        plan = [(label, actors, n) for n in sizes for label, actors in RUNS]
        for round_ in range(1, args.rounds + 1):
            for label, actors, n in plan if (round_ + args.reverse) % 2 else plan[::-1]:
                figures = run_once(folders[n], work, env, actors)
                if figures["indexed"] != n:  # a faster run that stored less is no faster
                    raise SystemExit(f"{label} indexed {figures['indexed']} of {n} images")
                elapsed[(label, n)].append(figures["elapsed_s"])
                walls[(label, n)].append(figures["wall_s"])
                print(
                    f"round {round_} {label}, {n} images: {n / figures['elapsed_s']:.2f} images/s, "
                    f"{figures['elapsed_s']:.1f} s, {figures['wall_s']:.1f} s whole command",
                    flush=True,
                )
    small, large = sizes
    print(
        f"\n{small} and {large} images of {args.size} px, {'tiny model' if args.tiny else 'ViT-B-32'}, PyTorch fp32"
    )
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    print(
        f"| runner | images/s at {small} | images/s at {large} | marginal images/s | fixed s | command s at {large} |"
    )
    print("|---|---|---|---|---|---|")
    marginal: dict[str, float] = {}
    for label, _ in RUNS:
        t_small, t_large = (statistics.median(elapsed[(label, n)]) for n in sizes)
        marginal[label] = (large - small) / (t_large - t_small) if t_large > t_small else float("nan")
        fixed = t_small - small / marginal[label]
        print(
            f"| {label} | {small / t_small:.2f} | {large / t_large:.2f} | {marginal[label]:.2f} | {fixed:.1f} "
            f"| {statistics.median(walls[(label, large)]):.1f} |"
        )
    end_to_end = {label: large / statistics.median(elapsed[(label, large)]) for label, _ in RUNS}
    print(
        f"Ray's overhead on one machine, 1 actor against the local runner: "
        f"{1 - end_to_end['--ray, 1 actor'] / end_to_end['local runner']:.0%} of images/s end to end at {large} "
        f"images (its start-up included); {1 - marginal['--ray, 1 actor'] / marginal['local runner']:.0%} of the "
        "marginal rate (which flatters Ray: its actors load their model while the tasks already decode)"
    )


if __name__ == "__main__":
    main()
