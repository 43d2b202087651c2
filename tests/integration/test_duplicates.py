"""Reused images with the tiny real model: byte copies form exact groups, resized recompressed copies near groups."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lookalike.config import load_settings
from lookalike.scan import write_duplicates_report
from lookalike.usecases import Context, ingest, risk
from tests.helpers import jpeg_bytes, make_image, write_images

# The tiny model has random weights, so unrelated pictures already score up to ~0.996 with
# each other; a resized and recompressed copy scores ~0.9999. Real CLIP separates them at 0.95.
TINY_THRESHOLD = 0.999


def test_copies_group_with_their_original(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    seller_a, seller_b, seller_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_images(seller_a, 12)
    original = make_image(99)  # not among the generated pictures (seeds 0-11, 40-44)
    original.save(seller_a / "original.png")
    seller_b.mkdir()
    shutil.copy(seller_a / "original.png", seller_b / "listing-77.png")  # the same bytes, another seller
    seller_c.mkdir()
    smaller = original.resize((int(original.width * 0.75), int(original.height * 0.75)))
    (seller_c / "reupload.jpg").write_bytes(jpeg_bytes(smaller, quality=70))
    write_images(seller_c, 5, start=40)

    config, checkpoint = tiny_model
    service = Context(
        load_settings(
            db=str(tmp_path / "dup.db"), model=str(config), pretrained=str(checkpoint), runtime="torch"
        )
    )
    for folder in (seller_a, seller_b, seller_c):
        ingest.index(service, str(folder), source=folder.name)

    groups = risk.duplicates(service, threshold=TINY_THRESHOLD)
    exact = [g for g in groups if g.kind == "exact"]
    near = [g for g in groups if g.kind == "near"]
    assert len(exact) == 1
    assert sorted((i.source, i.item_id) for i in exact[0].items) == [("a", "original"), ("b", "listing-77")]
    (group,) = [g for g in near if any(i.item_id == "reupload" for i in g.items)]
    assert {(i.source, i.item_id) for i in group.items} == {
        ("a", "original"),
        ("b", "listing-77"),
        ("c", "reupload"),
    }
    assert min(group.scores) >= TINY_THRESHOLD
    # Nothing else is grouped: every other picture is distinct.
    assert all({i.item_id for i in g.items} <= {"original", "listing-77", "reupload"} for g in groups)

    write_duplicates_report(tmp_path / "groups.json", groups, {"threshold": TINY_THRESHOLD})
    payload = json.loads((tmp_path / "groups.json").read_text(encoding="utf-8"))
    kinds = sorted(g["kind"] for g in payload["groups"])
    assert kinds == ["exact", "near"]
    assert set(payload["groups"][0]["items"][0]) == {"id", "item_id", "source", "uri", "score"}
    write_duplicates_report(tmp_path / "groups.html", groups, {"threshold": TINY_THRESHOLD})
    assert "data:image/jpeg;base64," in (tmp_path / "groups.html").read_text(encoding="utf-8")

    only_a = risk.duplicates(service, threshold=TINY_THRESHOLD, sources=["a"])
    assert only_a == []
