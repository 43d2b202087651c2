"""Reused images: byte-identical copies (same SHA-256) and near-identical ones (cosine ≥ threshold)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.store import Item, Store

DEFAULT_THRESHOLD = 0.95
_CHUNK = 256  # rows of the similarity matrix held at once: 256 x n float32


@dataclass(frozen=True)
class Group:
    """Items that show the same picture. ``scores[i]`` is item i's cosine to the group's first item."""

    kind: str  # "exact": same bytes; "near": resized, recompressed, lightly cropped...
    items: list[Item]
    scores: list[float]


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(
    store: Store,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sources: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Group]:
    """Exact groups by content hash, then near groups by exact all-pairs cosine over one vector per hash.

    The comparison is exhaustive (a chunked matrix product, no ANN), so no pair above the
    threshold is missed; memory holds the vectors once (dim x 4 bytes per item).
    """
    items: list[Item] = []
    parts: list[np.ndarray] = []
    for batch in store.iter_items(batch_size=8192, with_vector=True, sources=sources):
        parts.append(np.stack([item.vector for item in batch if item.vector is not None]))
        items.extend(dataclasses.replace(item, vector=None) for item in batch)
        if progress:
            progress(len(batch))
    if not items:
        return []
    vectors = np.concatenate(parts).astype(np.float32)

    by_hash: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_hash.setdefault(item.sha256, []).append(index)
    groups = [
        Group("exact", [items[i] for i in members], [1.0] * len(members))
        for members in by_hash.values()
        if len(members) > 1
    ]

    # One representative per distinct content; copies of it join whatever group it joins.
    members_of = list(by_hash.values())
    reps = np.array([members[0] for members in members_of])
    rep_vectors = vectors[reps]
    union = _UnionFind(len(reps))
    for start in range(0, len(reps), _CHUNK):
        sims = rep_vectors[start : start + _CHUNK] @ rep_vectors.T
        rows, cols = np.nonzero(sims >= threshold)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            if col > start + row:
                union.union(start + row, col)
    components: dict[int, list[int]] = {}
    for rep in range(len(reps)):
        components.setdefault(union.find(rep), []).append(rep)
    for component in components.values():
        if len(component) < 2:
            continue
        indices = [i for rep in component for i in members_of[rep]]
        scores = (vectors[indices] @ vectors[indices[0]]).tolist()
        order = sorted(range(len(indices)), key=lambda k: -scores[k] if k else -2.0)
        groups.append(Group("near", [items[indices[k]] for k in order], [min(1.0, scores[k]) for k in order]))
    groups.sort(key=lambda g: (-len(g.items), g.kind))
    return groups
