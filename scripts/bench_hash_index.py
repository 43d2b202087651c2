"""The matching service's PDQ index at scale: memory, lookups per second, recall against brute force.

    python scripts/bench_hash_index.py                         # 10M hashes, the issue's figures
    python scripts/bench_hash_index.py --hashes 1000000        # 1M
    python scripts/bench_hash_index.py --hashes 200000 --banks 200000   # also through a bank, SQLite to answer

Hashes: random 256-bit PDQ hashes, 10% of them near copies (1-16 bits flipped) of another, as a
bank holds variants of one picture. Queries: half are stored hashes with 0-31 bits flipped (each
must be found), half random (nothing within 31 bits, as most uploads). The index under test is
lookalike.scan.hashindex.HashIndex (multi-index hashing, exact); the radius is 31 bits.

Printed: the CPU (lscpu's model name) and load average before and after; the index's own bytes and
the process's resident memory grown by building it (the hashes included); lookups per second one
hash a call (as one HTTP request asks) and in batches of 100 and 1,000, each the median of 5
rounds, with the single call's p50 and p99 latency; and for a sample of queries, the pairs brute
force finds (every stored hash compared) against the pairs the index finds (recall, precision).
``--banks N`` also fills a workflow database's bank with N hashes and times the matcher's path
(its catch-up check against SQLite included) as GET /m/lookup runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lookalike.scan.hashindex import HashIndex, brute_force  # noqa: E402

RADIUS = 31


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def flipped(codes: np.ndarray, rng: np.random.Generator, low: int, high: int) -> np.ndarray:
    """Each row with between ``low`` and ``high`` random bits flipped."""
    out = codes.copy()
    for row in range(len(out)):
        bits = rng.choice(256, int(rng.integers(low, high + 1)), replace=False)
        for bit in bits:
            out[row, bit // 8] ^= np.uint8(0x80 >> (bit % 8))
    return out


def generate(n: int, rng: np.random.Generator) -> np.ndarray:
    codes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    copies = n // 10
    if copies:
        sources = rng.integers(0, n - copies, copies)
        # Vectorised flips: for each copy, 1-16 random bits.
        out = codes[sources].copy()
        counts = rng.integers(1, 17, copies)
        rows = np.repeat(np.arange(copies), counts)
        bits = rng.integers(0, 256, counts.sum())
        np.bitwise_xor.at(out, (rows, bits // 8), (0x80 >> (bits % 8)).astype(np.uint8))
        codes[n - copies :] = out
    return codes


def rate(run: object, count: int, rounds: int = 5) -> tuple[float, float]:
    """Median lookups per second over ``rounds`` runs of ``run()``, each answering ``count`` lookups:
    per second of wall-clock time, and per second of this process's CPU time (what the machine's
    other work does not change)."""
    wall, cpu = [], []
    for _ in range(rounds):
        started, used = time.perf_counter(), time.process_time()
        run()  # type: ignore[operator]
        wall.append(count / (time.perf_counter() - started))
        cpu.append(count / max(time.process_time() - used, 1e-9))
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hashes", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=2000, help="queries a round of single lookups")
    parser.add_argument("--sample", type=int, default=100, help="queries checked against brute force")
    parser.add_argument("--banks", type=int, default=0, help="also through a bank of this many hashes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps({"machine": machine}), flush=True)

    before = rss_mb()
    codes = generate(args.hashes, rng)
    started = time.perf_counter()
    index = HashIndex(codes)
    built_s = time.perf_counter() - started
    grown = rss_mb() - before
    memory = {
        "hashes": args.hashes,
        "build_s": round(built_s, 1),
        "index_mb": round(index.nbytes / 2**20, 1),
        "rss_grown_mb": round(grown, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps({"memory": memory}), flush=True)

    half = args.queries // 2
    near = flipped(codes[rng.integers(0, args.hashes, half)], rng, 0, RADIUS)
    queries = np.concatenate([near, rng.integers(0, 256, size=(args.queries - half, 32), dtype=np.uint8)])
    rng.shuffle(queries)

    latencies: list[float] = []

    def singles() -> None:
        for row in range(len(queries)):
            t = time.perf_counter()
            index.within(queries[row : row + 1], RADIUS)
            latencies.append(time.perf_counter() - t)

    single, single_cpu = rate(singles, len(queries))
    batched = {
        size: rate(
            lambda s=size: [index.within(queries[i : i + s], RADIUS) for i in range(0, len(queries), s)],
            len(queries),
        )
        for size in (100, 1000)
    }
    speed = {
        "lookups_per_s_one_a_call": round(single),
        "lookups_per_cpu_s_one_a_call": round(single_cpu),
        "lookups_per_s_batch_100": round(batched[100][0]),
        "lookups_per_s_batch_1000": round(batched[1000][0]),
        "lookups_per_cpu_s_batch_1000": round(batched[1000][1]),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3),
        "latency_p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3),
        "radius": RADIUS,
    }
    print(json.dumps({"speed": speed}), flush=True)

    sample = queries[: args.sample]
    started = time.perf_counter()
    truth = brute_force(codes, sample, RADIUS)
    brute_s = time.perf_counter() - started
    found = index.within(sample, RADIUS)
    expected = set(zip(truth.query.tolist(), truth.position.tolist(), strict=True))
    got = set(zip(found.query.tolist(), found.position.tolist(), strict=True))
    recall = {
        "sample": len(sample),
        "pairs_brute_force": len(expected),
        "pairs_index": len(got),
        "recall": round(len(expected & got) / len(expected), 6) if expected else 1.0,
        "precision": round(len(expected & got) / len(got), 6) if got else 1.0,
        "brute_force_lookups_per_s": round(len(sample) / brute_s, 1),
    }
    print(json.dumps({"recall": recall}), flush=True)

    if args.banks:
        del index, codes, truth, found  # the bank's matcher builds an index of its own
        print(json.dumps({"banks": through_banks(args.banks, rng, queries)}), flush=True)

    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps({"machine": machine}), flush=True)
    print(
        f"\n{machine['cpu']}, {machine['cores']} cores, load {machine['load_average_start'][0]} -> "
        f"{machine['load_average_end'][0]}: {args.hashes:,} PDQ hashes, index {memory['index_mb']} MB "
        f"(process grew {memory['rss_grown_mb']} MB, built in {memory['build_s']} s); "
        f"{speed['lookups_per_s_one_a_call']:,} lookups/s one a call ({speed['lookups_per_cpu_s_one_a_call']:,} "
        f"per CPU second; p50 {speed['latency_p50_ms']} ms, p99 {speed['latency_p99_ms']} ms), "
        f"{speed['lookups_per_s_batch_1000']:,}/s in batches of 1,000 "
        f"({speed['lookups_per_cpu_s_batch_1000']:,} per CPU second); "
        f"recall {recall['recall']} precision {recall['precision']} against brute force "
        f"({recall['pairs_brute_force']} pairs, {recall['brute_force_lookups_per_s']} brute-force lookups/s)"
    )


def through_banks(n: int, rng: np.random.Generator, queries: np.ndarray) -> dict[str, object]:
    """Fill a bank with ``n`` hashes in a workflow database; time the matcher as the service runs it."""
    from lookalike.workflow import Workflow
    from lookalike.workflow.banks import BankAction, NewEntry

    folder = Path(tempfile.mkdtemp(prefix="bench-banks-"))
    workflow = Workflow(str(folder / "workflow.sqlite"))
    banks = workflow.banks
    banks.create("bench", action=BankAction.FLAG, by="bench")
    codes = generate(n, rng)
    started = time.perf_counter()
    for start in range(0, n, 100_000):
        banks.add(
            "bench",
            [NewEntry(bytes(row).hex()) for row in codes[start : start + 100_000]],
            by="bench",
            action="import",
        )
    filled_s = time.perf_counter() - started
    before = rss_mb()
    started = time.perf_counter()
    banks.matcher.snapshot()
    loaded_s = time.perf_counter() - started

    def service() -> None:
        for row in range(len(queries)):
            banks.matcher.snapshot().lookup(queries[row : row + 1])  # the version check, then the lookup

    speed, speed_cpu = rate(service, len(queries), rounds=3)
    result = {
        "entries": n,
        "fill_s": round(filled_s, 1),
        "load_s": round(loaded_s, 1),
        "rss_grown_mb": round(rss_mb() - before, 1),
        "lookups_per_s_one_a_call": round(speed),
        "lookups_per_cpu_s_one_a_call": round(speed_cpu),
        "database_mb": round((folder / "workflow.sqlite").stat().st_size / 2**20, 1),
    }
    workflow.close()
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return result


if __name__ == "__main__":
    main()
