"""Duplicate groups: the vector index agrees with exhaustive search, groups never chain, crops go with crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.scan import find_duplicates
from lookalike.scan.neighbours import EXACT_BELOW, Pairs, choose, leader_groups, pairs_within
from lookalike.store import Item, open_store

DIM = 48


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def planted(n: int, clusters: int, seed: int = 3) -> tuple[np.ndarray, list[set[int]]]:
    """n vectors around 500 topics (as embeddings of a catalog are); ``clusters`` of them get 2-5
    near copies each (cosine ~0.97-0.995)."""
    rng = np.random.default_rng(seed)
    topics = unit(rng.normal(size=(500, DIM)))
    vectors = unit(topics[rng.integers(0, 500, n)] + 0.9 * unit(rng.normal(size=(n, DIM))))
    truth, row = [], 0
    for _ in range(clusters):
        size = int(rng.integers(3, 7))
        base = vectors[row]
        for k in range(1, size):
            vectors[row + k] = unit(base + rng.uniform(0.08, 0.2) * unit(rng.normal(size=DIM)))
        truth.append(set(range(row, row + size)))
        row += size
    return vectors, truth


def as_sets(n: int, pairs: Pairs) -> set[frozenset[int]]:
    return {frozenset([rep, *members]) for rep, members, _ in leader_groups(n, pairs)}


@pytest.mark.slow  # the exhaustive reference is 5e9 products: ~40 s here
def test_the_index_finds_the_same_groups_as_exhaustive_search_at_100k() -> None:
    vectors, truth = planted(100_000, 2000)
    assert not choose(len(vectors)).exact  # the inverted-file path, not the exhaustive one
    ann = pairs_within(vectors, 0.9)
    exact = pairs_within(vectors, 0.9, exact_below=10**9)
    assert set((exact.left * 10**6 + exact.right).tolist()) == set((ann.left * 10**6 + ann.right).tolist())
    groups = as_sets(len(vectors), ann)
    assert groups == as_sets(len(vectors), exact)
    assert groups == {frozenset(t) for t in truth}  # the planted clusters, each one group
    assert np.allclose(ann.score, np.einsum("ij,ij->i", vectors[ann.left], vectors[ann.right]), atol=1e-5)


def test_a_chain_whose_ends_are_apart_is_not_one_group() -> None:
    a = unit(np.eye(DIM)[0])
    c = unit(np.eye(DIM)[0] + 0.62 * np.eye(DIM)[1])  # cos(a, c) ~ 0.85
    b = unit(a + c)  # ~0.96 to both
    rest = unit(np.random.default_rng(0).normal(size=(50, DIM)))
    vectors = np.vstack([a, b, c, rest])
    assert float(a @ c) < 0.9 <= min(float(a @ b), float(b @ c))
    groups = leader_groups(len(vectors), pairs_within(vectors, 0.9))
    assert len(groups) == 1
    rep, members, scores = groups[0]
    assert rep == 1 and len(members) == 1 and min(scores) >= 0.9  # b with one of its ends, not both


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2, max_value=60),
    st.floats(min_value=0.3, max_value=0.99),
    st.integers(min_value=0, max_value=2**31),
)
def test_every_two_members_of_a_group_are_within_the_threshold(n: int, threshold: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = unit(rng.normal(size=(3, 6)))
    vectors = unit(base[rng.integers(0, 3, n)] + 0.4 * rng.normal(size=(n, 6)))
    groups = leader_groups(n, pairs_within(vectors, threshold))
    seen: set[int] = set()
    for rep, members, scores in groups:
        group = [rep, *members]
        assert not seen & set(group)  # an item is in one group at most
        seen |= set(group)
        sims = vectors[group] @ vectors[group].T
        assert (sims >= threshold - 1e-5).all()
        assert np.allclose(scores, vectors[members] @ vectors[rep], atol=1e-5)


def test_a_reused_picture_and_its_crops_form_one_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    picture, bag, shoe, other = unit(rng.normal(size=(4, DIM)))
    store = open_store(str(tmp_path / "crops.db"), "images")
    store.create(DIM, model="fake")

    def item(i: int, sha: str, vector: np.ndarray, source: str, **crop: str) -> Item:
        return Item(i, sha, f"sku{i}", "", source, 1_700_000_000, f"/img/{i}.jpg", 100, 100, vector, **crop)

    def noisy(v: np.ndarray) -> np.ndarray:
        return unit(v + 0.05 * unit(rng.normal(size=DIM)))

    items = [
        item(1, "P", picture, "a"),
        item(2, "P", picture, "b"),  # the same bytes, another seller
        item(3, "Q", noisy(picture), "c"),  # resized and recompressed
        item(11, "P:bag", bag, "a", parent_sha256="P", box="0,0,50,50"),
        item(12, "P:bag", bag, "b", parent_sha256="P", box="0,0,50,50"),
        item(13, "Q:bag", noisy(bag), "c", parent_sha256="Q", box="0,0,40,40"),
        item(14, "Q:shoe", shoe, "c", parent_sha256="Q", box="50,50,90,90"),
        # Another photo of the same bag, in a picture that is not a copy: a crop group of its own.
        item(4, "R", other, "d"),
        item(15, "R:bag", noisy(bag), "d", parent_sha256="R", box="10,10,60,60"),
    ]
    store.insert(items)
    store.flush()
    groups = find_duplicates(store, threshold=0.95)
    by_kind = {g.kind: g for g in groups}
    assert sorted(g.kind for g in groups) == ["crop", "exact", "near"]
    near = by_kind["near"]
    assert {i.id for i in near.items} == {1, 2, 3} and min(near.scores) >= 0.95
    assert {c.id for c in near.crops} == {11, 12, 13, 14}  # the picture's crops are in its group
    assert {i.id for i in by_kind["exact"].items} == {1, 2} and by_kind["exact"].crops == []
    crop = by_kind["crop"]
    assert 15 in {i.id for i in crop.items} and all(i.box for i in crop.items)
    assert all(not i.box for g in (near, by_kind["exact"]) for i in g.items)  # wholes never meet crops
    store.close()


def test_small_collections_are_compared_exhaustively() -> None:
    assert choose(EXACT_BELOW - 1).exact and not choose(EXACT_BELOW).exact
    assert len(pairs_within(np.zeros((1, 4), dtype=np.float32), 0.5)) == 0


def test_the_duplicates_benchmark_runs_small(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import runpy
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_duplicates.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--vectors", "25000", "--dim", "32", "--sample", "500"])
    runpy.run_path(str(script), run_name="__main__")
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["vectors"] == 25000 and result["exact"] is False and result["nprobe"] == 8
    assert result["sample_pairs_exhaustive"] > 0 and result["recall"] == 1.0
