"""Ingest images/s of the local runner and of ``index --ray`` with 1 and 2 actors, on the same folder.

    PYTHONPATH=src python scripts/bench_ingest_ray.py [--images 64] [--rounds 1] [--tiny]

Each run indexes the same generated folder (product-photo-like JPEGs, bench.generate_photos) into a
fresh Milvus Lite database through the use case ``lookalike index FOLDER [--ray --actors N]`` runs, in
a process of its own; a --ray run starts its own local Ray instance on this machine. The model is
ViT-B-32 with random weights by default (no hub is reachable here; the compute is the real model's)
on the PyTorch runtime for every run, so that the runners are what differs; ``--tiny`` uses the
tests' tiny model instead, where the runners' own costs dominate. Prints images/s side by side
(the report's: from the first listed image to the last write, the actors' model loads included),
the whole command's wall time, Ray's overhead against the local runner, the CPU and load average.
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
import json, sys, time
from lookalike.config import Settings
from lookalike.usecases import ingest
from lookalike.usecases.context import Context

folder, db, actors = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = Context(Settings(db=db))
on_ray = ingest.OnRay(actors=actors) if actors else None
marks = []  # (time, images done) at each batch written

def progress(n):
    marks.append((time.perf_counter(), (marks[-1][1] if marks else 0) + n))

try:
    report = ingest.index(ctx, folder, source="bench", on_ray=on_ray, progress=progress)
finally:
    ctx.close()
# Steady state: from the first batch written to the last (start-up, model loads and the first batch excluded).
steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]) if len(marks) > 1 else 0.0
print(json.dumps({"images_per_s": report.images_per_s, "steady_per_s": steady, "indexed": report.indexed}))
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
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=800, help="side of each generated JPEG in pixels")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model instead of ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from lookalike.bench import cpu_model, generate_photos

    with tempfile.TemporaryDirectory(prefix="lookalike-ray-bench-") as tmp:
        work = Path(tmp)
        if args.tiny:
            sys.path.insert(0, str(ROOT))
            from tests.helpers import build_tiny_model

            config, checkpoint = build_tiny_model(work / "model")
            model, pretrained = str(config), str(checkpoint)
        else:
            model, pretrained = "ViT-B-32", "random"
        folder = work / "photos"
        generate_photos(folder, args.images, args.size)
        env = {
            **os.environ,
            "LOOKALIKE_MODEL": model,
            "LOOKALIKE_PRETRAINED": pretrained,
            "LOOKALIKE_RUNTIME": "torch",
            "LOOKALIKE_BATCH_SIZE": str(args.batch_size),
            "HF_HUB_OFFLINE": "1",
        }
        rates: dict[str, list[float]] = {label: [] for label, _ in RUNS}
        steady: dict[str, list[float]] = {label: [] for label, _ in RUNS}
        walls: dict[str, list[float]] = {label: [] for label, _ in RUNS}
        for round_ in range(1, args.rounds + 1):
            for label, actors in RUNS if round_ % 2 else RUNS[::-1]:
                figures = run_once(folder, work, env, actors)
                rates[label].append(figures["images_per_s"])
                steady[label].append(figures["steady_per_s"])
                walls[label].append(figures["wall_s"])
                print(
                    f"round {round_} {label}: {figures['images_per_s']:.2f} images/s, "
                    f"{figures['steady_per_s']:.2f} steady, "
                    f"{figures['wall_s']:.1f} s whole command ({figures['indexed']:.0f} indexed)",
                    flush=True,
                )
    print(
        f"\n{args.images} images of {args.size} px, {'tiny model' if args.tiny else 'ViT-B-32'}, PyTorch fp32"
    )
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    local = statistics.median(rates["local runner"])
    print(f"{'runner':<18}{'images/s':>10}{'whole command s':>18}{'vs local':>10}")
    for label, _ in RUNS:
        rate = statistics.median(rates[label])
        print(f"{label:<18}{rate:>10.2f}{statistics.median(walls[label]):>18.1f}{rate / local - 1:>+10.0%}")
    one = statistics.median(rates["--ray, 1 actor"])
    print(
        f"Ray's overhead on one machine (1 actor against the local runner): {1 - one / local:.0%} of images/s"
    )


if __name__ == "__main__":
    main()
