"""Every pair of vectors with cosine at least a threshold, through a vector index: never all pairs.

Below ``EXACT_BELOW`` vectors the comparison is exhaustive (blocks of one matrix product).
Above it, an inverted-file index: spherical k-means (FAISS) on a sample splits the vectors
into ``nlist`` cells, each vector lives in its nearest cell and probes its ``nprobe`` nearest
ones, and each cell is compared with the vectors that probe it in one matrix product. A pair
is found when either vector probes the other's cell, which for near-copies (cosine 0.9 and
up) is almost always so; the recall against the exhaustive answer is measured by
``scripts/bench_duplicates.py``. Scores are exact float32 products, never quantised.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

EXACT_BELOW = 20_000
DEFAULT_NPROBE = 8
_BLOCK = 2048  # rows and columns of a product held at once: 2048 x 8192 floats, 64 MB
_COLUMNS = 8192


@dataclass(frozen=True)
class Pairs:
    """Pairs (left < right) of rows and their cosine."""

    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    score: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.left)


@dataclass(frozen=True)
class IndexChoice:
    exact: bool
    nlist: int = 0
    nprobe: int = 0
    train_size: int = 0


def choose(n: int, *, exact_below: int = EXACT_BELOW, nprobe: int | None = None) -> IndexChoice:
    if n < exact_below:
        return IndexChoice(exact=True)
    nlist = max(64, min(4096, int(2 * math.sqrt(n))))  # ~500 vectors a cell at 1M
    probes = min(nlist, nprobe or DEFAULT_NPROBE)
    return IndexChoice(False, nlist, probes, min(n, 40 * nlist))


def _collect(found: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]], n: int) -> Pairs:
    found = [f for f in found if len(f[0])]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0, dtype=np.float32))
    keys = np.concatenate([k for k, _ in found])
    values = np.concatenate([v for _, v in found])
    keys, first = np.unique(keys, return_index=True)  # a pair found from both sides counts once
    return Pairs(keys // n, keys % n, values[first])


def _compare(
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.int64],
    members: npt.NDArray[np.int64],
    threshold: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Pairs (as keys left * n + right) of a query and a member at or above the threshold."""
    n = len(vectors)
    keys, values = [], []
    for first in range(0, len(members), _COLUMNS):
        chosen_members = members[first : first + _COLUMNS]
        block = vectors[chosen_members]
        for start in range(0, len(queries), _BLOCK):
            chosen = queries[start : start + _BLOCK]
            sims = vectors[chosen] @ block.T
            rows, cols = np.nonzero(sims >= threshold)
            left, right = chosen[rows], chosen_members[cols]
            keep = left != right
            left, right = left[keep], right[keep]
            keys.append(np.minimum(left, right) * n + np.maximum(left, right))
            values.append(sims[rows[keep], cols[keep]].astype(np.float32))
    if not keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return np.concatenate(keys), np.concatenate(values)


def _run(
    vectors: npt.NDArray[np.float32],
    tasks: Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    threshold: float,
    progress: Callable[[int], None] | None,
) -> Pairs:
    """The products on every core, each with one BLAS thread: many small products, no spinning."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    found = []
    with (
        threadpool_limits(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="lookalike-pairs") as pool,
    ):
        pending = []
        for queries, members in tasks:
            pending.append((len(members), pool.submit(_compare, vectors, queries, members, threshold)))
            if len(pending) >= 64:
                size, future = pending.pop(0)
                found.append(future.result())
                if progress:
                    progress(size)
        for size, future in pending:
            found.append(future.result())
            if progress:
                progress(size)
    return _collect(found, len(vectors))


def pairs_within(
    vectors: npt.NDArray[np.float32],
    threshold: float,
    *,
    exact_below: int = EXACT_BELOW,
    nprobe: int | None = None,
    progress: Callable[[int], None] | None = None,
    seed: int = 0,
) -> Pairs:
    """Every pair of rows of ``vectors`` (L2-normalised) whose inner product is at least ``threshold``.

    ``progress`` is called with counts of rows done (in any order).
    """
    n, dim = vectors.shape
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    everyone = np.arange(n, dtype=np.int64)
    choice = choose(n, exact_below=exact_below, nprobe=nprobe)
    if choice.exact:
        blocks = ((everyone[s : s + _BLOCK], everyone[s:]) for s in range(0, n, _BLOCK))
        return _run(vectors, blocks, threshold, progress)

    import faiss

    sample = np.sort(np.random.default_rng(seed).choice(n, size=choice.train_size, replace=False))
    kmeans = faiss.Kmeans(dim, choice.nlist, niter=10, spherical=True, seed=seed, verbose=False)
    kmeans.train(vectors[sample])
    cells = faiss.IndexFlatIP(dim)
    cells.add(np.asarray(kmeans.centroids, dtype=np.float32))
    probes = np.empty((n, choice.nprobe), dtype=np.int64)
    for start in range(0, n, 65_536):
        probes[start : start + 65_536] = cells.search(vectors[start : start + 65_536], choice.nprobe)[1]
    home = probes[:, 0]
    by_home = np.argsort(home, kind="stable")
    home_starts = np.searchsorted(home[by_home], np.arange(choice.nlist + 1))
    probed = probes.ravel()
    by_probe = np.argsort(probed, kind="stable")
    probe_starts = np.searchsorted(probed[by_probe], np.arange(choice.nlist + 1))
    askers = by_probe // choice.nprobe  # the vector that probes each (sorted) cell
    del probes, probed, by_probe
    tasks = (
        (askers[probe_starts[c] : probe_starts[c + 1]], by_home[home_starts[c] : home_starts[c + 1]])
        for c in range(choice.nlist)
    )
    return _run(vectors, tasks, threshold, progress)


def leader_groups(n: int, pairs: Pairs) -> list[tuple[int, list[int], list[float]]]:
    """Groups that do not chain: (representative, members, members' score to it).

    The rule: the item with the most neighbours (pairs) not yet in a group (ties: the lower
    row) is a representative; its free neighbours join it, most similar first, each only if it
    is also a neighbour of every member already in. So every two items of a group are within
    the threshold of each other (and of the representative): a-b-c with a and c apart is never
    one group. Then the next free item, and so on; an item whose neighbours are all taken
    forms no group.
    """
    if not len(pairs):
        return []
    rows = np.concatenate([pairs.left, pairs.right])
    cols = np.concatenate([pairs.right, pairs.left])
    sims = np.concatenate([pairs.score, pairs.score])
    order = np.lexsort((cols, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    starts = np.searchsorted(rows, np.arange(n + 1))
    degree = np.diff(starts)
    taken = np.zeros(n, dtype=bool)

    def neighbours(i: int) -> npt.NDArray[np.int64]:
        return cols[starts[i] : starts[i + 1]]

    groups = []
    for rep in np.lexsort((np.arange(n), -degree)).tolist():
        if degree[rep] == 0:
            break
        if taken[rep]:
            continue
        near, scores = neighbours(rep), sims[starts[rep] : starts[rep + 1]]
        free = ~taken[near]
        if not free.any():
            continue
        members: list[int] = []
        kept: list[float] = []
        for k in np.argsort(-scores[free], kind="stable").tolist():
            candidate = int(near[free][k])
            if members and not np.isin(members, neighbours(candidate), assume_unique=True).all():
                continue
            members.append(candidate)
            kept.append(float(scores[free][k]))
        taken[rep] = True
        taken[members] = True
        groups.append((rep, members, kept))
    return groups
