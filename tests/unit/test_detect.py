"""Detect and crop: box clipping and filtering, crops stored as items, searched, and shown with their box.

The detector is a fake returning fixed boxes through the real clipping and filtering; the
embedder is the deterministic fake; Milvus Lite is real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lookalike.config import load_settings
from lookalike.embed.detect import Detection, clip_box, crop, largest, select_detections
from lookalike.errors import ConfigError
from lookalike.ingest.ids import stable_id
from lookalike.store.models import WHOLE_IMAGE_LABEL, parse_box
from lookalike.usecases import Context, Query, ingest
from lookalike.usecases import search as searching
from tests.helpers import FakeDetector, FakeEmbedder, write_images

HANDBAG = (60, 10, 160, 110)  # FakeDetector's first box, clipped to the 160 × 120 picture
SHOE = (5, 20, 55, 90)


def make_service(tmp_path: Path, detector: FakeDetector | None = None) -> Context:
    settings = load_settings(db=str(tmp_path / "crops.db"), workers=2)
    return Context(settings, embedder=FakeEmbedder(), detector=detector or FakeDetector())


def test_boxes_are_clipped_filtered_by_score_and_size_and_ordered_by_confidence() -> None:
    raw = [
        ((-20.5, -3, 50.4, 40), "a", 0.5),
        ((10, 10, 300, 300), "b", 0.8),
        ((0, 0, 20, 90), "thin", 0.99),
        ((5, 5, 90, 90), "unsure", 0.2),
        ((500, 500, 600, 600), "outside", 0.9),
    ]
    kept = select_detections(raw, 100, 80, min_score=0.25, min_size=32)
    assert kept == [Detection((10, 10, 100, 80), "b", 0.8), Detection((0, 0, 50, 40), "a", 0.5)]
    assert select_detections(raw, 100, 80, min_score=0.25, min_size=32, max_boxes=1) == kept[:1]
    assert largest(kept) == kept[0] and largest([]) is None
    assert clip_box((500, 500, 600, 600), 100, 80) is None


def test_a_box_is_parsed_strictly_and_a_crop_outside_the_image_is_refused() -> None:
    assert parse_box("1, 2, 30, 40") == (1, 2, 30, 40) and parse_box("") is None
    for bad in ("1,2,3", "5,5,5,9", "a,b,c,d", "-1,0,4,4"):
        with pytest.raises(ValueError):
            parse_box(bad)
    image = Image.new("RGB", (50, 40))
    assert crop(image, (10, 10, 999, 999)).size == (40, 30)
    with pytest.raises(ConfigError, match="outside"):
        crop(image, (60, 60, 90, 90))


def test_detected_crops_are_stored_beside_the_whole_image(tmp_path: Path) -> None:
    photos = write_images(tmp_path / "photos", 3)
    service = make_service(tmp_path)
    report = ingest.index(service, str(tmp_path / "photos"), source="street", detect=True)
    assert (report.indexed, report.crops, report.skipped) == (3, 6, [])
    items = list(service.store.iter_items(batch_size=100))
    flat = [item for batch in items for item in batch]
    assert len(flat) == 9
    for photo in photos:
        rows = [item for item in flat if item.uri == str(photo.resolve())]
        whole = next(item for item in rows if not item.box)
        crops = sorted((item for item in rows if item.box), key=lambda item: -item.det_score)
        assert whole.label == WHOLE_IMAGE_LABEL and whole.parent_sha256 == ""
        assert [item.crop_box for item in crops] == [HANDBAG, SHOE]
        assert [item.label for item in crops] == ["handbag", "shoe"]
        assert [round(item.det_score, 3) for item in crops] == [0.9, 0.6]
        for index, item in enumerate(crops, start=1):
            assert item.parent_sha256 == whole.sha256 and item.sha256 != whole.sha256
            assert item.id == stable_id("street", photo.resolve().as_posix(), whole.sha256, index)
            assert (item.item_id, item.width, item.height) == (whole.item_id, 160, 120)

    again = ingest.index(service, str(tmp_path / "photos"), source="street", detect=True)
    assert (again.indexed, again.crops, again.already_indexed) == (0, 0, 3)
    assert service.store.count() == 9


def test_a_crop_is_searchable_and_its_hit_shows_the_box(tmp_path: Path) -> None:
    photos = write_images(tmp_path / "photos", 4)
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "photos"), detect=True)
    with Image.open(photos[2]) as picture:
        picture.crop(HANDBAG).save(tmp_path / "bag.png")
    hit = searching.search(service, Query(image=str(tmp_path / "bag.png"), k=3)).hits[0]
    assert hit.item.uri == str(photos[2].resolve()) and hit.item.crop_box == HANDBAG
    assert hit.score > 0.99
    shown = hit.to_dict()
    assert shown["box"] == list(HANDBAG) and shown["label"] == "handbag" and shown["det_score"] == 0.9
    assert shown["parent_sha256"] and (shown["width"], shown["height"]) == (160, 120)


def test_an_image_query_with_detect_embeds_its_largest_box_or_the_one_given(tmp_path: Path) -> None:
    photos = write_images(tmp_path / "photos", 4)
    detector = FakeDetector()
    service = make_service(tmp_path, detector)
    ingest.index(service, str(tmp_path / "photos"), detect=True)
    calls = detector.calls

    detected = searching.search(service, Query(image=str(photos[1]), detect=True, k=2))
    assert detector.calls == calls + 1 and detected.query_box == HANDBAG
    assert detected.hits[0].item.crop_box == HANDBAG and detected.hits[0].item.uri == str(photos[1].resolve())
    assert detected.to_dict()["query_box"] == list(HANDBAG)

    chosen = searching.search(service, Query(image=str(photos[1]), box=SHOE, k=2))
    assert detector.calls == calls + 1  # a given box needs no detector
    assert chosen.query_box == SHOE and chosen.hits[0].item.crop_box == SHOE

    whole = searching.search(service, Query(image=str(photos[1]), k=1))
    assert whole.query_box is None and not whole.hits[0].item.box
    with pytest.raises(ConfigError, match="give --image"):
        searching.search(service, Query(text="bag", box=SHOE))


def test_a_query_image_without_objects_is_searched_whole_with_a_warning(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 2)
    service = make_service(tmp_path)
    ingest.index(service, str(tmp_path / "photos"), detect=True)
    Image.new("RGB", (20, 20), (200, 30, 30)).save(
        tmp_path / "small.png"
    )  # every fake box is clipped to < 32 px
    result = searching.search(service, Query(image=str(tmp_path / "small.png"), detect=True, k=1))
    assert result.query_box is None and "no object" in result.warnings[0]


def test_indexing_with_detect_later_adds_crops_to_pictures_stored_whole(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 3)
    service = make_service(tmp_path)
    first = ingest.index(service, str(tmp_path / "photos"))
    assert (first.indexed, first.crops) == (3, 0)
    later = ingest.index(service, str(tmp_path / "photos"), detect=True)
    assert (later.indexed, later.crops, later.already_indexed) == (0, 6, 3)
    assert service.store.count() == 9
    again = ingest.index(service, str(tmp_path / "photos"), detect=True)
    assert (again.indexed, again.crops, service.store.count()) == (0, 0, 9)


def test_a_collection_made_before_crops_is_upgraded_and_then_stores_crops(tmp_path: Path) -> None:
    from pymilvus import DataType, MilvusClient

    # The schema lookalike created before crops existed: no parent_sha256, box, label, det_score.
    client = MilvusClient(str(tmp_path / "crops.db"))
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=192)
    for name in ("sha256", "item_id", "name", "source"):
        schema.add_field(name, DataType.VARCHAR, max_length=256)
    schema.add_field("created_at", DataType.INT64)
    schema.add_field("uri", DataType.VARCHAR, max_length=4096)
    schema.add_field("width", DataType.INT32)
    schema.add_field("height", DataType.INT32)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    client.create_collection("images", schema=schema, index_params=index)
    client.close()

    photos = write_images(tmp_path / "photos", 3)
    service = make_service(tmp_path)
    assert ingest.index(service, str(tmp_path / "photos")).indexed == 3
    assert service.store.holds_crops()  # opened by the new code: upgraded to the current layout
    hit = searching.search(service, Query(image=str(photos[0]), k=1)).hits[0]
    assert hit.item.uri == str(photos[0].resolve()) and hit.item.box == "" and hit.to_dict()["box"] is None
    assert ingest.index(service, str(tmp_path / "photos"), detect=True).crops == 6
    assert service.store.count() == 9
