"""Reused images: byte-identical copies (same SHA-256) and near-identical ones (cosine ≥ threshold).

How groups are formed (the rule the reports follow):

- **exact**: items with the same bytes (SHA-256), whoever listed them.
- **near**: one item per distinct content is compared with the others through a vector index
  (neighbours.py: exhaustive below 20K items, an inverted-file index above). Groups do not
  chain: the content with the most near copies is a group's representative (its first item),
  and a content joins it only when it is within the threshold of the representative *and of
  every member already in*; then the next content not yet in a group, and so on
  (neighbours.leader_groups). Byte copies of a member join its group.
- Detected crops are compared with crops, whole pictures with wholes. A picture's crops go
  with its group (``Group.crops``), so one reused picture and its crops are one group; crops
  form a group of their own (kind "crop") only when they come from pictures of different
  groups (the same product photographed again, say).
- ``--by pdq``: the same rule over PDQ hashes, with Hamming distance at most ``max_distance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lookalike.scan.neighbours import EXACT_BELOW, Pairs, leader_groups, pairs_within
from lookalike.store import Item, Store
from lookalike.store.window import Window

DEFAULT_THRESHOLD = 0.95


@dataclass(frozen=True)
class Group:
    """Items that show the same picture. ``scores[i]`` is item i's similarity to the group's first item.

    For near groups the first item is the representative; ``crops`` are the detected crops of
    the group's pictures.
    """

    kind: str  # "exact": same bytes; "near": resized, recompressed, lightly cropped...; "crop"
    items: list[Item]
    scores: list[float]
    crops: list[Item] = field(default_factory=list)


@dataclass
class _Rows:
    """What grouping needs of each stored item, kept compactly (no Item objects for a million rows)."""

    ids: list[int] = field(default_factory=list)
    sha: list[str] = field(default_factory=list)
    parent: list[str] = field(default_factory=list)  # a crop's picture; "" for a whole picture
    vectors: npt.NDArray[np.float32] | None = None


def _read(
    store: Store, sources: Sequence[str] | None, progress: Callable[[int], None] | None, with_vector: bool
) -> _Rows:
    rows = _Rows()
    # The vectors go straight into one array sized by the count (no list of parts, no second copy).
    window = Window.of(sources=sources)
    expected = store.count(window) if with_vector else 0
    vectors = np.empty((expected, store.dim()) if with_vector else (0, 0), dtype=np.float32)
    filled = 0
    for batch in store.iter_items(batch_size=8192, with_vector=with_vector, window=window):
        for item in batch:
            rows.ids.append(item.id)
            rows.sha.append(item.sha256)
            rows.parent.append(item.parent_sha256 if item.box else "")
        if with_vector:
            block = np.stack([item.vector for item in batch])  # type: ignore[misc]
            if filled + len(block) > len(vectors):  # rows written since the count
                vectors = np.concatenate([vectors[:filled], block])
            else:
                vectors[filled : filled + len(block)] = block
            filled += len(block)
        if progress:
            progress(len(batch))
    if with_vector:
        rows.vectors = vectors[:filled]
    return rows


def find_duplicates(
    store: Store,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sources: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    exact_below: int | None = None,
    nprobe: int | None = None,
) -> list[Group]:
    """Exact groups by content hash, then near groups by cosine through a vector index (see the module doc)."""
    rows = _read(store, sources, progress, with_vector=True)
    assert rows.vectors is not None
    vectors = rows.vectors
    below = EXACT_BELOW if exact_below is None else exact_below

    def similar(members: list[int]) -> Pairs:
        # Every row a member (no byte copies, no crops): the array itself, not a 2 GB copy of it.
        whole = len(members) == len(vectors) and members == list(range(len(vectors)))
        chosen = vectors if whole else vectors[members]
        return pairs_within(chosen, threshold, nprobe=nprobe, exact_below=below)

    return _assemble(store, rows, similar, same=1.0)


def find_hash_duplicates(
    store: Store,
    hashes: dict[int, tuple[str, int]],
    *,
    max_distance: int = 31,
    sources: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Group]:
    """Groups by PDQ Hamming distance (whole pictures only; crops have no hash). Scores are distances."""
    from lookalike.scan.hashes import pairs_within_distance, to_bits

    rows = _read(store, sources, progress, with_vector=False)
    hashed = [i for i, item_id in enumerate(rows.ids) if item_id in hashes and not rows.parent[i]]
    rows = _Rows([rows.ids[i] for i in hashed], [rows.sha[i] for i in hashed], [""] * len(hashed), None)
    bits = to_bits([hashes[item_id][0] for item_id in rows.ids])

    def similar(members: list[int]) -> Pairs:
        return pairs_within_distance(bits[members], max_distance)

    return _assemble(store, rows, similar, same=0.0)


def _assemble(store: Store, rows: _Rows, similar: Callable[[list[int]], Pairs], same: float) -> list[Group]:
    """Groups from the rows; ``same`` is the score of identical content (cosine 1, distance 0)."""
    by_hash: dict[str, list[int]] = {}
    for index, sha in enumerate(rows.sha):
        by_hash.setdefault(sha, []).append(index)
    exact = [members for members in by_hash.values() if len(members) > 1]
    # One representative per distinct content; crops and wholes apart.
    contents = list(by_hash.values())
    near: list[tuple[str, list[int], list[float]]] = []
    for crops in (False, True):
        chosen = [c for c, members in enumerate(contents) if bool(rows.parent[members[0]]) == crops]
        reps = [contents[c][0] for c in chosen]
        for rep, members, scores in leader_groups(len(reps), similar(reps)):
            indices = [contents[chosen[rep]]] + [contents[chosen[m]] for m in members]
            values = [same] * len(indices[0])
            for copies, score in zip(indices[1:], scores, strict=True):
                values += [score] * len(copies)
            near.append(("crop" if crops else "near", [i for copies in indices for i in copies], values))
    wanted = {rows.ids[i] for members in exact for i in members} | {
        rows.ids[i] for _, members, _ in near for i in members
    }
    grouped = {rows.sha[i] for members in exact for i in members if not rows.parent[i]}
    grouped |= {rows.sha[i] for kind, members, _ in near if kind == "near" for i in members}
    crops_of: dict[str, list[int]] = {}  # the crops of grouped pictures only: they are fetched
    for index, parent in enumerate(rows.parent):
        if parent in grouped:
            crops_of.setdefault(parent, []).append(index)
    wanted |= {rows.ids[i] for members in crops_of.values() for i in members}
    items = _fetch(store, sorted(wanted))
    groups: list[Group] = []
    whole_group_of: dict[str, int] = {}  # picture sha -> group number, for folding crops in
    # Near groups first: a near group holds its byte copies too, so it is their crops' home.
    for kind, members, scores in near + [("exact", m, [same] * len(m)) for m in exact]:
        present = [(i, s) for i, s in zip(members, scores, strict=True) if rows.ids[i] in items]
        if len(present) < 2:
            continue
        if not rows.parent[present[0][0]]:
            for i, _ in present:
                whole_group_of.setdefault(rows.sha[i], len(groups))
        groups.append(
            Group(
                kind,
                [items[rows.ids[i]] for i, _ in present],
                [min(1.0, s) if same else s for _, s in present],
            )
        )
    kept: list[Group] = []
    for number, group in enumerate(groups):
        if all(item.box for item in group.items):  # a crop group, or byte copies of one crop
            homes = {whole_group_of.get(item.parent_sha256) for item in group.items}
            if len(homes) == 1 and None not in homes:
                continue  # crops of one reused picture: they are in that picture's group
        else:
            shas = {item.sha256 for item in group.items}
            group.crops.extend(
                items[rows.ids[i]]
                for sha in sorted(shas)
                for i in crops_of.get(sha, [])
                if rows.ids[i] in items and whole_group_of.get(sha) == number
            )
        kept.append(group)
    kept.sort(key=lambda g: (-len(g.items), g.kind))
    return kept


def _fetch(store: Store, ids: list[int]) -> dict[int, Item]:
    found: dict[int, Item] = {}
    for start in range(0, len(ids), 1000):
        found.update((item.id, item) for item in store.get(ids[start : start + 1000]))
    return found
