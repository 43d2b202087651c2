"""PDQ hashes of real photographs (scikit-image's samples): kept at ingest, backfilled, matched."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ConfigError
from lookalike.ingest.phash import pdq
from lookalike.scan.hashes import distances, parse_hash_list, to_bits
from lookalike.usecases import hashes, ingest
from tests.unit.test_policies import make_context

data = pytest.importorskip("skimage.data")
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "coins",
    "hubble_deep_field",
)


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def altered(image: Image.Image) -> Image.Image:
    """Resized to 60% and recompressed twice at low JPEG quality."""
    small = image.resize((int(image.width * 0.6), int(image.height * 0.6)), Image.Resampling.BICUBIC)
    for quality in (50, 35):
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=quality)
        small = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return small


def distance(a: str, b: str) -> int:
    return int(distances(to_bits([a])[0], to_bits([b]))[0])


def test_a_resized_recompressed_copy_is_near_and_other_photos_are_far() -> None:
    originals = {name: pdq(photo(name))[0] for name in PHOTOS}
    for name in ("astronaut", "coffee", "chelsea"):
        assert distance(pdq(altered(photo(name)))[0], originals[name]) <= 31
    for a in PHOTOS:
        for b in PHOTOS:
            if a < b:
                assert distance(originals[a], originals[b]) > 31, (a, b)


def test_the_hash_is_the_reference_hex_of_256_bits() -> None:
    value, quality = pdq(photo("astronaut"))
    assert len(value) == 64 and int(value, 16) >= 0 and 0 <= quality <= 100
    assert distance(value, value) == 0
    flipped = format(int(value, 16) ^ 0b1011, "064x")
    assert distance(value, flipped) == 3


def write_photos(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in PHOTOS:
        paths[name] = folder / f"{name}.png"
        photo(name).save(paths[name])
    paths["astronaut_copy"] = folder / "astronaut_copy.jpg"
    altered(photo("astronaut")).save(paths["astronaut_copy"], quality=70)
    return paths


def test_match_hashes_finds_the_original_and_its_copy_only(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    paths = write_photos(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    assert len(ctx.workflow.hashes()) == len(paths)  # every picture hashed as it was indexed
    query = pdq(altered(photo("astronaut").rotate(0)))[0]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# known images\n\n{query} astronaut leak\n{'0' * 64}\n", encoding="utf-8")
    found = hashes.match(ctx, str(listing), max_distance=31)
    assert {Path(m.item.uri).name for m in found} == {"astronaut.png", "astronaut_copy.jpg"}
    assert all(m.label == "astronaut leak" and m.line == 3 and m.distance <= 31 for m in found)
    stored = {Path(m.item.uri).name: m.pdq for m in found}
    listing.write_text(f"{stored['astronaut.png']}\n", encoding="utf-8")
    exact = hashes.match(ctx, str(listing), max_distance=0)
    assert [(Path(m.item.uri).name, m.distance) for m in exact] == [("astronaut.png", 0)]
    everything = hashes.match(ctx, str(listing), max_distance=256)
    assert len(everything) == len(paths)  # 256 bits away is every hash


def test_a_bad_hash_list_is_refused_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2"):
        parse_hash_list(f"{'a' * 64}\nnot-a-hash label\n")
    with pytest.raises(ConfigError, match="holds no hashes"):
        parse_hash_list("# nothing\n\n")
    ctx = make_context(tmp_path)
    with pytest.raises(ConfigError, match="max-distance"):
        hashes.match(ctx, str(tmp_path / "missing.txt"), max_distance=300)
    with pytest.raises(ConfigError, match="not found"):
        hashes.match(ctx, str(tmp_path / "missing.txt"))


def test_an_older_collection_gets_hashes_by_backfill_and_by_sync(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    paths = write_photos(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    expected = ctx.workflow.hashes()
    ctx.workflow.forget_hashes(list(expected))  # as a collection indexed before hashes existed
    done = hashes.backfill(ctx)
    assert done.hashed == len(paths) and not done.skipped
    restored = ctx.workflow.hashes()
    assert set(restored) == set(expected)
    # Decoded at full size now, at the model's draft size at ingest: the same picture either way.
    assert all(distance(restored[i][0], expected[i][0]) <= 8 for i in expected)
    ctx.workflow.forget_hashes(list(expected)[:3])
    ingest.index(ctx, str(tmp_path / "photos"), sync=True)
    assert set(ctx.workflow.hashes()) == set(expected)
    assert np.all([len(h) == 64 for h, _ in ctx.workflow.hashes().values()])


def test_duplicates_by_pdq_group_a_photo_with_its_altered_copy(tmp_path: Path) -> None:
    from lookalike.usecases import risk

    ctx = make_context(tmp_path)
    write_photos(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    groups = risk.duplicates(ctx, by="pdq", max_distance=31)
    assert [sorted(Path(i.uri).name for i in g.items) for g in groups] == [
        ["astronaut.png", "astronaut_copy.jpg"]
    ]
    assert groups[0].kind == "near" and groups[0].scores[0] == 0.0 and 0 < groups[0].scores[1] <= 31
    assert risk.duplicates(ctx, by="pdq", max_distance=0) == []
    with pytest.raises(ConfigError, match="--by"):
        risk.duplicates(ctx, by="md5")


def test_deleting_an_item_forgets_its_hash_and_backfill_drops_stale_ones(tmp_path: Path) -> None:
    from lookalike.usecases import items

    ctx = make_context(tmp_path)
    write_photos(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    first, second = sorted(ctx.workflow.hashes())[:2]
    items.delete(ctx, [first])
    assert first not in ctx.workflow.hashes()
    ctx.store.delete([second])  # as another process would, past the use case
    ctx.store.flush()
    assert second in ctx.workflow.hashes()
    assert second not in {m.item.id for m in hashes.match(ctx, str(_all(tmp_path)), max_distance=256)}
    hashes.backfill(ctx)
    assert second not in ctx.workflow.hashes()


def _all(tmp_path: Path) -> Path:
    path = tmp_path / "all.txt"
    path.write_text("0" * 64 + "\n", encoding="utf-8")
    return path
