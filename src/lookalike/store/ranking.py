"""The k best hits of a search out of the candidates each body of rows handed back.

A graph's candidates come with fp16 scores: the few that could still be among the k best are
re-scored in float32, and the hits' items are read straight from the columns' buffers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lookalike.store.models import Hit, Item
from lookalike.store.segments import FP16_ERROR, Segment

Part = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], Segment]
"""A body's answer to a search: scores, rows (-1 pads) and one of its views (for its columns)."""


def hits(best: list[tuple[float, int, Segment]]) -> list[Hit]:
    """Hits in score order, each body's rows read and converted at once."""
    if len({id(segment.table) for _, _, segment in best}) == 1:  # the usual case: one body
        segment = best[0][2]
        items = segment.items(np.asarray([row for _, row, _ in best], dtype=np.int64), with_vector=False)
        return [Hit(score, item) for (score, _, _), item in zip(best, items, strict=True)]
    by_body: dict[str, list[int]] = {}
    for position, (_, _, segment) in enumerate(best):
        by_body.setdefault(segment.name, []).append(position)
    found: list[Item | None] = [None] * len(best)
    for positions in by_body.values():
        segment = best[positions[0]][2]
        rows = np.asarray([best[i][1] for i in positions], dtype=np.int64)
        for i, item in zip(positions, segment.items(rows, with_vector=False), strict=True):
            found[i] = item
    return [Hit(score, item) for (score, _, _), item in zip(best, found, strict=True) if item is not None]


def best(queries: npt.NDArray[np.float32], k: int, parts: list[Part]) -> list[list[Hit]]:
    """The k best hits per query of the bodies' answers, in exact float32 scores.

    A graph's scores are fp16's, off by at most ``FP16_ERROR`` per unit of query and vector norm:
    only its candidates that could still reach the k best are read back in float32 and re-scored
    (about k of them, not all). Ties go by body, then row, so that an answer never depends on timing.
    """
    if not parts:
        return [[] for _ in queries]
    if len(parts) == 1:  # one body (one graph, or one month's rows): nothing to join
        scores, rows, part = parts[0][0], parts[0][1], np.zeros(parts[0][0].shape[1], dtype=np.int64)
    else:
        scores = np.concatenate([p[0] for p in parts], axis=1)
        rows = np.concatenate([p[1] for p in parts], axis=1)
        part = np.concatenate([np.full(p[0].shape[1], i) for i, p in enumerate(parts)])
    bounds = [FP16_ERROR * p[2].norm if p[2].is_graph else 0.0 for p in parts]
    error = np.asarray(bounds)[part] if any(bounds) else None
    norms = np.sqrt(np.einsum("ij,ij->i", queries, queries)) if error is not None else None
    found = []
    for q in range(len(queries)):
        valid = np.flatnonzero(rows[q] >= 0)
        score = scores[q, valid]
        exact = score
        if error is not None and norms is not None:
            margin = error[valid] * float(norms[q])
            if len(valid) > k:
                # Candidates whose best possible score is below the k-th best worst one drop out.
                least = np.partition(score - margin, len(valid) - k)[len(valid) - k]
                near = score + margin >= least
                valid, score = valid[near], score[near]
            exact = score.copy()
            for i in np.unique(part[valid]).tolist():
                if parts[i][2].is_graph:
                    picked = part[valid] == i
                    exact[picked] = parts[i][2].rescore(queries[q], rows[q, valid[picked]])
        order = np.lexsort((rows[q, valid], part[valid], -exact))[:k].tolist()
        picked_rows = rows[q, valid].tolist()
        picked_parts = part[valid].tolist()
        exact_scores = exact.tolist()
        found.append(hits([(exact_scores[j], picked_rows[j], parts[picked_parts[j]][2]) for j in order]))
    return found
