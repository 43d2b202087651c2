"""Policies scored at ingest, flags, reviews with takedown, the audit; a fake embedder with a planted concept."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import load_settings
from lookalike.errors import ConfigError, ItemNotFoundError
from lookalike.usecases import Context, Query, ingest, policies, review
from lookalike.usecases import search as searching
from lookalike.workflow import FlagStatus
from tests.helpers import FakeEmbedder, make_image, write_images

PLANTED = 500  # make_image(500) is the prohibited picture; copies of it must be flagged, nothing else


def make_context(tmp_path: Path, embedder: FakeEmbedder | None = None) -> Context:
    embedder = embedder or FakeEmbedder()
    embedder.concepts["a prohibited thing"] = embedder.embed_images([make_image(PLANTED)])[0]
    settings = load_settings(db=str(tmp_path / "lookalike.db"), collection="images", workers=2)
    return Context(settings, embedder=embedder)


def write_policy(tmp_path: Path, threshold: float = 0.95) -> Path:
    path = tmp_path / "prohibited.toml"
    path.write_text(
        f'[labels.contraband]\nprompts = ["a prohibited thing"]\nthreshold = {threshold}\n'
        '[labels.unused]\nprompts = ["nothing planted means this"]\nthreshold = 0.9\n',
        encoding="utf-8",
    )
    return path


def plant(folder: Path) -> list[Path]:
    """Three copies of the prohibited picture: as it is, resized, and recompressed hard."""
    folder.mkdir(parents=True, exist_ok=True)
    picture = make_image(PLANTED)
    paths = [folder / "planted_a.png", folder / "planted_b.jpg", folder / "planted_c.jpg"]
    picture.save(paths[0])
    picture.resize((200, 150)).save(paths[1], quality=85)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=40)
    Image.open(buffer).save(paths[2], quality=60)
    return paths


def stored_ids(ctx: Context, paths: list[Path]) -> set[int]:
    uris = {str(p.resolve()) for p in paths}
    return {item.id for batch in ctx.store.iter_items() for item in batch if item.uri in uris}


def test_ingest_flags_exactly_the_planted_items_in_the_same_pass(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    ctx = make_context(tmp_path, embedder)
    policies.add(ctx, str(write_policy(tmp_path)))
    write_images(tmp_path / "photos", 30)
    planted = plant(tmp_path / "photos")
    before = embedder.image_calls
    report = ingest.index(ctx, str(tmp_path / "photos"))
    assert report.indexed == 33
    assert embedder.image_calls - before == 33  # scoring the policy embedded nothing a second time
    _, listed = review.flags(ctx)
    assert {row.flag.item for row in listed} == stored_ids(ctx, planted)
    assert {(row.flag.policy, row.flag.label, row.flag.status) for row in listed} == {
        ("prohibited", "contraband", FlagStatus.OPEN)
    }
    assert all(row.flag.score >= 0.95 for row in listed)
    # Indexing again raises no second flag for the same item.
    ingest.index(ctx, str(tmp_path / "photos"))
    assert review.flags(ctx)[0] == 3


def test_policy_added_later_flags_stored_images_by_scan(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    write_images(tmp_path / "photos", 20)
    planted = plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    policies.add(ctx, str(write_policy(tmp_path)), "late")
    assert review.flags(ctx)[0] == 0  # adding a policy flags nothing by itself
    total, added = policies.scan_and_flag(ctx, "late")
    assert (total, added) == (23, 3)
    assert {row.flag.item for row in review.flags(ctx)[1]} == stored_ids(ctx, planted)
    assert policies.scan_and_flag(ctx, "late") == (23, 0)


def test_removed_policy_flags_nothing_new_and_keeps_its_flags(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    plant(tmp_path / "first")
    ingest.index(ctx, str(tmp_path / "first"))
    policies.remove(ctx, "prohibited")
    assert policies.listed(ctx) == []
    plant(tmp_path / "second")
    ingest.index(ctx, str(tmp_path / "second"))
    assert review.flags(ctx)[0] == 3


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[labels.x]\nprompts = []\n", "non-empty list"),
        ("not toml [", "Cannot read"),
        ("[labels.x]\nprompts = ['a']\nthreshold = 3\n", "between -1 and 1"),
    ],
)
def test_bad_policy_is_refused_and_nothing_is_kept(tmp_path: Path, text: str, reason: str) -> None:
    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=reason):
        policies.add(ctx, str(bad))
    with pytest.raises(ConfigError, match="exists already"):
        policies.add(ctx, str(write_policy(tmp_path)))
    with pytest.raises(ConfigError, match="policy name"):
        policies.add(ctx, str(write_policy(tmp_path)), "no spaces allowed")
    assert [p.name for p in policies.listed(ctx)] == ["prohibited"]


def test_review_decisions_persist_across_restarts_and_show_in_the_audit(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    first, second, third = (row.flag.id for row in review.flags(ctx)[1])
    review.review(ctx, first, FlagStatus.DISMISSED, reviewer="ana", note="a toy, not the thing")
    review.review(ctx, second, FlagStatus.CONFIRMED, reviewer="bo")
    with pytest.raises(ItemNotFoundError):
        review.review(ctx, 9999, FlagStatus.CONFIRMED, reviewer="bo")
    with pytest.raises(ConfigError, match="Only a confirmed"):
        review.review(ctx, third, FlagStatus.DISMISSED, reviewer="bo", take_down=True)
    ctx.close()

    again = make_context(tmp_path)
    statuses = {row.flag.id: row.flag.status for row in review.flags(again)[1]}
    assert statuses == {first: FlagStatus.DISMISSED, second: FlagStatus.CONFIRMED, third: FlagStatus.OPEN}
    assert [row.flag.id for row in review.flags(again, status=FlagStatus.OPEN)[1]] == [third]
    assert review.export_audit(again, str(tmp_path / "audit.csv")) == 2
    with (tmp_path / "audit.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["flag"], r["decision"], r["reviewer"], r["note"]) for r in rows] == [
        (str(first), "dismissed", "ana", "a toy, not the thing"),
        (str(second), "confirmed", "bo", ""),
    ]
    review.export_audit(again, str(tmp_path / "audit.json"))
    decisions = json.loads((tmp_path / "audit.json").read_text())["decisions"]
    assert [d["took_down"] for d in decisions] == [False, False] and decisions[0]["at"].endswith("Z")
    with pytest.raises(ConfigError, match=".csv or .json"):
        review.export_audit(again, str(tmp_path / "audit.xlsx"))


def test_confirm_with_takedown_removes_the_item_everywhere(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    write_images(tmp_path / "photos", 5)
    planted = plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    target = review.flags(ctx)[1][0].flag
    assert target.item in ctx.workflow.hashes()
    records = review.review(ctx, target.id, FlagStatus.CONFIRMED, reviewer="ana", take_down=True)
    assert [r.took_down for r in records] == [True]
    assert ctx.store.get([target.item]) == []
    assert target.item not in {i.id for batch in ctx.store.iter_items() for i in batch}
    hits = searching.search(ctx, Query(image=str(planted[0]), k=10)).hits
    assert target.item not in {hit.item.id for hit in hits}
    assert target.item not in ctx.workflow.hashes()
    ctx.close()
    again = make_context(tmp_path)
    assert again.store.get([target.item]) == []
    listed = {row.flag.id: row for row in review.flags(again)[1]}
    assert listed[target.id].item is None and listed[target.id].flag.status is FlagStatus.CONFIRMED
    assert [d.took_down for d in again.workflow.decisions()] == [True]


def test_flags_filter_by_policy_and_day(tmp_path: Path) -> None:
    from datetime import UTC, date, datetime

    ctx = make_context(tmp_path)
    policies.add(ctx, str(write_policy(tmp_path)))
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    today = datetime.now(UTC).date()
    assert review.flags(ctx, since=today)[0] == 3
    assert review.flags(ctx, until=date(2000, 1, 1))[0] == 0
    assert review.flags(ctx, policy="other")[0] == 0
    total, page = review.flags(ctx, limit=2, offset=2)
    assert total == 3 and len(page) == 1
    with pytest.raises(ConfigError):
        review.status_of("maybe")
    assert np.isfinite(page[0].flag.score)
