"""Ingest images/s and store reads of two commits side by side, in one run (alternating rounds).

    PYTHONPATH=src python scripts/bench_ingest_runner.py [--before main] [--images 256] [--rounds 5]
        [--items 20000] [--searches 300]

The earlier commit is checked out in a temporary git worktree; each round ingests the same generated
folder (product-photo-like JPEGs, bench.generate_photos) into a fresh Milvus Lite database through the
use case a user's ``lookalike index FOLDER`` runs (``usecases.ingest.index``: read, hash, decode, PDQ,
screen, embed, store, policies), once with the earlier tree and once with this one, each in its own
process. Besides images/s (wall clock, which a shared machine's load moves), it reports the CPU time
per image of the whole process (all threads), which load moves far less.

Each round also times the store's reads with both trees, each in its own process, on the same
generated collection (``--items`` random unit vectors of 512 dimensions over 12 months and 8
sources, in Milvus Lite, flushed into the read index): a search (k 10) unfiltered, within a source,
within a month, and a pass over every item (``iter_items``, without vectors), in process CPU time per
operation. The model is the tests' tiny
open_clip model by default, so that the runner's own costs (reading, decoding, threads, writes)
dominate, which is what changes between the two; ``--model``/``--pretrained`` measure another. Prints
the medians, the CPU and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, tempfile
from lookalike.config import Settings
from lookalike.usecases import ingest
from lookalike.usecases.context import Context

folder, db = sys.argv[1], sys.argv[2]
ctx = Context(Settings(db=db))
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

try:
    ctx.embedder.load_image()  # the model loads before the clock starts, as in both runners
    before = cpu()
    report = ingest.index(ctx, folder, source="bench")
    cpu_s = cpu() - before
finally:
    ctx.close()
print(json.dumps({"images_per_s": report.images_per_s, "indexed": report.indexed, "cpu_ms": 1000 * cpu_s / report.indexed}))
"""


STORE_CHILD = """
import json, resource, sys, time
import numpy as np
from lookalike.store import LiteStore
from lookalike.store.models import Item

db, count, searches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:  # a tree with the Window value, or one with loose window parameters
    from lookalike.store.window import Window
    def window(**given): return {"window": Window.of(**given)}
except ImportError:
    def window(**given): return given
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

rng = np.random.default_rng(7)
vectors = rng.standard_normal((count, 512)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
month = 30 * 86400
start = 1704067200  # 2024-01-01
items = [
    Item(i + 1, f"{i:064x}", f"sku{i}", f"product {i}", f"shop{i % 8}", start + (i % 12) * month + i % month,
         f"/photos/{i}.jpg", 800, 600, vectors[i])
    for i in range(count)
]
store = LiteStore(db, "images")
store.create(512, index="HNSW")
for at in range(0, count, 5000):
    store.insert(items[at : at + 5000])
store.flush()
queries = rng.standard_normal((searches, 512)).astype(np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
cases = {
    "search": {},
    "search, one source": window(sources=["shop3"]),
    "search, one month": window(since=start + 5 * month, until=start + 6 * month),
}
figures = {}
for name, given in cases.items():
    for q in queries[:20]:
        store.search(q[None, :], k=10, **given)  # warm: the graph's pages, the lookups
    before = cpu()
    for q in queries:
        store.search(q[None, :], k=10, **given)
    figures[name] = 1000 * (cpu() - before) / searches
before = cpu()
seen = sum(len(batch) for batch in store.iter_items(with_vector=False))
figures["iter_items (all)"] = 1000 * (cpu() - before)
assert seen == count, seen
store.close()
print(json.dumps(figures))
"""


def store_once(tree: Path, work: Path, env: dict[str, str], items: int, searches: int) -> dict[str, float]:
    db = tempfile.mkdtemp(dir=work) + "/store.db"
    done = subprocess.run(
        [sys.executable, "-c", STORE_CHILD, db, str(items), str(searches)],
        env={**env, "PYTHONPATH": str(tree / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"store reads in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_once(tree: Path, folder: Path, work: Path, env: dict[str, str]) -> dict[str, float]:
    db = tempfile.mkdtemp(dir=work) + "/bench.db"
    child_env = {**env, "PYTHONPATH": str(tree / "src"), "LOOKALIKE_WORKFLOW_DB": db + ".workflow"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), db],
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ingest in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", help="the commit to compare with (default: main)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=800, help="side of each generated JPEG in pixels")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--items", type=int, default=20000, help="items of the store-read collection (0: skip)"
    )
    parser.add_argument("--searches", type=int, default=300, help="searches timed per case")
    parser.add_argument(
        "--model", help="open_clip model name or config JSON (default: the tests' tiny model)"
    )
    parser.add_argument("--pretrained", help="weights tag or checkpoint file (with --model)")
    args = parser.parse_args()

    from lookalike.bench import cpu_model, generate_photos

    with tempfile.TemporaryDirectory(prefix="lookalike-runner-bench-") as tmp:
        work = Path(tmp)
        before = work / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
            check=True,
            capture_output=True,
        )
        try:
            if args.model:
                model, pretrained = args.model, args.pretrained or ""
            else:
                sys.path.insert(0, str(ROOT))
                from tests.helpers import build_tiny_model

                config, checkpoint = build_tiny_model(work / "model")
                model, pretrained = str(config), str(checkpoint)
            folder = work / "photos"
            generate_photos(folder, args.images, args.size)
            env = {
                **os.environ,
                "LOOKALIKE_MODEL": model,
                "LOOKALIKE_PRETRAINED": pretrained,
                "LOOKALIKE_RUNTIME": "torch",
                "HF_HUB_OFFLINE": "1",
            }
            rates: dict[str, list[float]] = {"before": [], "after": []}
            cpu: dict[str, list[float]] = {"before": [], "after": []}
            reads: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
            for round_ in range(1, args.rounds + 1):
                # Alternate which goes first, so that a machine growing busier favours neither.
                order = [("before", before), ("after", ROOT)]
                for label, tree in order if round_ % 2 else order[::-1]:
                    figures = run_once(tree, folder, work, env)
                    rates[label].append(figures["images_per_s"])
                    cpu[label].append(figures["cpu_ms"])
                    print(
                        f"round {round_} {label}: {figures['images_per_s']:.1f} images/s, "
                        f"{figures['cpu_ms']:.2f} CPU ms/image ({figures['indexed']} indexed)"
                    )
                    if args.items:
                        timed = store_once(tree, work, env, args.items, args.searches)
                        for case, ms in timed.items():
                            reads[label].setdefault(case, []).append(ms)
                        print(
                            f"round {round_} {label}: "
                            + ", ".join(f"{c} {ms:.3f} ms" for c, ms in timed.items())
                        )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False
            )
    print(f"CPU: {cpu_model()}; load average {os.getloadavg()}")
    for label, values in rates.items():
        tree = args.before if label == "before" else "this tree"
        each = sorted(round(v, 1) for v in values)
        print(
            f"{label} ({tree}): median {statistics.median(values):.1f} images/s over {len(values)} rounds {each}"
        )
        print(f"{label} ({tree}): median {statistics.median(cpu[label]):.2f} CPU ms per image (all threads)")
    if args.items:
        print(f"store reads, {args.items} items x 512-d, process CPU ms per operation (median of rounds):")
        print(f"| case | {args.before} | this tree | ratio |")
        print("|---|---|---|---|")
        for case, before_ms in reads["before"].items():
            old, new = statistics.median(before_ms), statistics.median(reads["after"][case])
            print(f"| {case} | {old:.3f} | {new:.3f} | x{new / old:.2f} |")


if __name__ == "__main__":
    main()
