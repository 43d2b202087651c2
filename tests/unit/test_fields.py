"""The field table is the one description of an item: every layout is derived from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lookalike.api.schemas import HitOut, ItemOut
from lookalike.store import Hit, LiteStore
from lookalike.store.fields import FIELDS, SCALAR_FIELDS, VARCHAR_BYTES, Kind, Role, catalog_value
from lookalike.store.models import Item
from lookalike.store.rows import arrow_schema, from_arrow, from_row, normalise, to_arrow
from tests.store_model import DIM, make_item


def test_item_the_arrow_schema_and_the_api_models_hold_the_table_s_fields() -> None:
    assert sorted(f.name for f in dataclasses.fields(Item) if f.name != "vector") == sorted(SCALAR_FIELDS)
    assert arrow_schema().names == list(SCALAR_FIELDS)
    assert str(arrow_schema().field("tags").type) == "list<item: string>"
    assert set(ItemOut.model_fields) == {*SCALAR_FIELDS, "pdq", "pdq_quality"}
    shown = {spec.name for spec in FIELDS if spec.in_hit}
    assert set(HitOut.model_fields) == {*shown, "score", "ranks"}  # ranks: a hybrid search's hits only
    assert set(Hit(0.5, make_item(1)).to_dict()) == set(HitOut.model_fields) - {"ranks"}
    assert set(Hit(0.5, make_item(1), ranks=(1, None)).to_dict()) == set(HitOut.model_fields)


def test_the_milvus_schema_has_each_field_with_its_type_and_byte_limit(tmp_path: Path) -> None:
    store = LiteStore(str(tmp_path / "f.db"), "images")
    store.create(DIM, index="FLAT")
    described = {f["name"]: f for f in store.client.describe_collection("images")["fields"]}
    assert set(described) == {*SCALAR_FIELDS, "vector"}
    for spec in FIELDS:
        if spec.kind is Kind.TEXT:
            assert described[spec.name]["params"]["max_length"] == spec.max_bytes, spec.name
        if spec.kind is Kind.TEXTS:
            # (Milvus Lite keeps no length for an array's texts; a server does: normalise cuts them first)
            assert described[spec.name]["params"]["max_capacity"] == spec.max_items
    store.close()


def test_rows_round_trip_through_milvus_rows_and_arrow_with_every_field() -> None:
    item = dataclasses.replace(
        make_item(3), box="1,2,3,4", label="shoe", det_score=0.5, category="c", tags=("x",)
    )
    assert from_row({**dataclasses.asdict(item), "tags": ["x"]}).metadata() == item.metadata()
    table = to_arrow([item], arrow_schema())
    assert from_arrow(table.to_pydict())[0].metadata() == item.metadata()
    older = {name: values for name, values in table.to_pydict().items() if name not in ("category", "tags")}
    assert from_arrow(older)[0].tags == () and from_arrow(older)[0].category == ""  # an older export


def test_display_fields_are_cut_keys_left_out_whole_and_identities_are_refused() -> None:
    shown = normalise(dataclasses.replace(make_item(1), name="ü" * 1100))
    assert shown.name == "ü" * 1024  # a display text is cut on a character boundary
    long_tags = tuple(f"t{i}" + "é" * 100 for i in range(40))  # 202-203 bytes each: over 128
    fitting = tuple(f"t{i}" + "é" * 50 for i in range(40))  # 102-103 bytes each
    kept = normalise(dataclasses.replace(make_item(1), category="ü" * 200, tags=long_tags + fitting))
    assert kept.category == ""  # a filter key over its limit is left out, never cut
    assert kept.tags == fitting[:32]  # over-long tags left out, then the first 32
    assert all(len(t.encode()) <= VARCHAR_BYTES["tags"] for t in kept.tags)
    identities = [spec.name for spec in FIELDS if spec.role is Role.IDENTITY]
    assert identities == ["sha256", "item_id", "source", "parent_sha256"]
    from lookalike.errors import ConfigError

    with pytest.raises(ConfigError, match="never cut"):
        normalise(dataclasses.replace(make_item(1), source="s" * 300))


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        ("red|sale", ("red", "sale")),
        (" red | red |  | sale ", ("red", "sale")),
        ("", ()),
        (None, ()),
        (["a", " b ", None, "a"], ("a", "b")),  # a Parquet list column
        (0, ("0",)),  # a Parquet number column: 0 is a tag, not a missing one
        ([0, 7], ("0", "7")),
        (float("nan"), ()),  # a missing float (pandas writes None as NaN)
        ([b"red", b"sale"], ("red", "sale")),  # a list of binary
        ("new\nline|tab\tbed|\x00|cr\r\nlf", ("new line", "tab bed", "cr lf")),  # filterable: no controls
    ],
)
def test_catalog_tags_are_split_by_a_vertical_bar_and_cleaned(raw: object, tags: tuple[str, ...]) -> None:
    spec = next(spec for spec in FIELDS if spec.name == "tags")
    assert catalog_value(spec, raw) == tags


@pytest.mark.parametrize(
    ("raw", "text"),
    [(0, "0"), (0.0, "0.0"), (float("nan"), ""), (None, ""), (b"ok", "ok"), ("a\x01b\n", "a b")],
)
def test_a_catalog_category_keeps_a_number_and_reads_a_missing_float_as_empty(raw: object, text: str) -> None:
    spec = next(spec for spec in FIELDS if spec.name == "category")
    assert catalog_value(spec, raw) == text


def test_a_collection_s_version_is_told_by_its_fields_when_it_records_none() -> None:
    from lookalike.store.fields import SCHEMA_VERSION, added_in, version_of

    every = set(SCALAR_FIELDS)
    assert version_of(every, None) == SCHEMA_VERSION  # made now, read before its version was recorded
    assert version_of(every - set(added_in(3)), None) == 2
    assert version_of(every - set(added_in(2)) - set(added_in(3)), None) == 1
    assert version_of(every - set(added_in(3)), "3") == 3  # what it records wins
