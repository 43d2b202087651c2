"""Compliance scans: score every stored vector in a window against a label set, without decoding images."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lookalike.scan.labels import LabelSet
from lookalike.store import Item, Store
from lookalike.store.window import EVERYTHING, Window

SCAN_BATCH = 8192


@dataclass(frozen=True)
class ScanRow:
    """One stored item, its best label and every label's cosine."""

    item: Item
    label: str
    score: float
    scores: dict[str, float]
    matched: tuple[str, ...]


def scan(
    store: Store,
    labels: LabelSet,
    *,
    window: Window = EVERYTHING,
    min_score: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[ScanRow]:
    """Yield a row per item in the window that matches a label.

    Every item in the window is scored exhaustively (no ANN search, so nothing is missed).
    Without ``min_score`` a row is kept when some label matches (its threshold and negative
    prompts); with it, when the best cosine is at least ``min_score``.
    """
    for batch in store.iter_items(batch_size=SCAN_BATCH, with_vector=True, window=window):
        vectors = np.stack([item.vector for item in batch if item.vector is not None])
        scores = labels.score(vectors)
        best = scores.best
        for row, item in enumerate(batch):
            top = float(scores.cosine[row, best[row]])
            matched = tuple(name for name, hit in zip(labels.names, scores.matched[row], strict=True) if hit)
            keep = top >= min_score if min_score is not None else bool(matched)
            if keep:
                yield ScanRow(
                    item=item,
                    label=labels.names[best[row]],
                    score=top,
                    scores={name: float(v) for name, v in zip(labels.names, scores.cosine[row], strict=True)},
                    matched=matched,
                )
        if progress:
            progress(len(batch))
