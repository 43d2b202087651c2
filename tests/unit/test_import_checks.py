"""`import` stores only what the store itself would: finite, non-zero, unit-length vectors of the
collection's size under 63-bit ids; a bad row is left out with its reason, a file that is not an
export is refused before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lookalike.errors import ConfigError
from lookalike.store import Item, LiteStore
from lookalike.store.backup import import_parquet
from lookalike.store.rows import arrow_schema, to_arrow
from tests.store_model import DIM, make_item, vector


def write_export(path: Path, rows: list[dict[str, Any]], *, vector_type: Any = None, dim: int = DIM) -> Path:
    """An export of ``rows`` (Item fields, with a ``vector`` list that may be anything)."""
    schema = arrow_schema(vector_type or pa.list_(pa.float32()), metadata={"lookalike.dim": str(dim)})
    id_type = pa.uint64() if any(row["id"] is not None and row["id"] >= 2**63 for row in rows) else pa.int64()
    schema = schema.set(schema.get_field_index("id"), pa.field("id", id_type))
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def row(item_id: int, values: Any = None, **fields: Any) -> dict[str, Any]:
    meta = make_item(item_id).metadata()
    meta.update(fields)
    meta["vector"] = list(vector(item_id) if values is None else values)
    return meta


def stored(store: LiteStore) -> dict[int, Item]:
    return {item.id: item for batch in store.iter_items(with_vector=True) for item in batch}


def test_bad_vectors_and_ids_are_left_out_with_their_reasons_and_the_rest_imported(tmp_path: Path) -> None:
    huge = np.full(DIM, 1e30)
    rows = [
        row(1),
        row(2, [float("nan")] + [0.1] * (DIM - 1)),
        row(3, [float("inf")] + [0.1] * (DIM - 1)),
        row(4, huge),
        row(5, np.zeros(DIM)),
        row(6, [0.5] * (DIM - 1)),  # one value short
        row(7, id=-7),
        row(8, id=-(2**63)),
        row(9, source="X" * 256 + "-shopA"),
        row(10, [1e-30] * DIM),
        row(11, vector(11) * 3.0),  # finite, not unit length: normalised
    ]
    path = write_export(tmp_path / "bad.parquet", rows)
    store = LiteStore(str(tmp_path / "t.db"), "images")
    with pytest.raises(ConfigError) as refused:
        import_parquet(store, str(path))
    message = str(refused.value)
    assert message.startswith("Imported 2 items (0 were already stored), but 9 rows of ")
    for reason in (
        "2 with NaN or infinite values in the vector (ids 2, 3)",
        "2 with a vector whose length is outside 1e-06 .. 1e+06 (ids 4, 10)",
        "1 with an all-zero vector (ids 5)",
        f"1 with a vector of the wrong size (not {DIM} values) (ids 6)",
        f"2 with an id outside 0 .. 2^63-1 (ids -7, {-(2**63)})",
        "1 with a source over 256 bytes, not UTF-8 or holding NUL (an identity is never cut) (ids 9)",
    ):
        assert reason in message, message
    held = stored(store)
    assert set(held) == {1, 11}
    assert np.array_equal(held[1].vector, vector(1))  # a unit vector comes back bit for bit
    assert np.linalg.norm(held[11].vector) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(held[11].vector, vector(11), atol=1e-6)
    assert all(np.isfinite(item.vector).all() for item in held.values())
    store.close()


def test_an_export_of_unnormalised_vectors_is_normalised_on_the_way_in(tmp_path: Path) -> None:
    rows = [row(i, vector(i) * scale) for i, scale in ((1, 0.001), (2, 12.5), (3, 1e5))]
    path = write_export(tmp_path / "raw.parquet", rows)
    store = LiteStore(str(tmp_path / "t.db"), "images")
    assert import_parquet(store, str(path)) == (3, 0)
    for item_id, item in stored(store).items():
        assert np.allclose(item.vector, vector(item_id), atol=1e-6)
    hits = store.search(vector(2)[None], k=1)[0]
    assert hits[0].item.id == 2 and hits[0].score == pytest.approx(1.0, abs=1e-5)  # inner product = cosine
    store.close()


def test_an_id_beyond_int64_is_a_bad_row(tmp_path: Path) -> None:
    path = write_export(tmp_path / "unsigned.parquet", [row(1), row(2, id=2**63), row(3, id=2**64 - 1)])
    store = LiteStore(str(tmp_path / "t.db"), "images")
    with pytest.raises(ConfigError, match=rf"2 with an id outside 0 .. 2\^63-1 \(ids {2**63}, {2**64 - 1}\)"):
        import_parquet(store, str(path))
    assert set(stored(store)) == {1}
    store.close()


def test_a_null_id_or_vector_is_a_bad_row_not_a_crash(tmp_path: Path) -> None:
    rows = [row(1), row(2, id=None), {**row(3), "vector": None}]
    path = write_export(tmp_path / "nulls.parquet", rows)
    store = LiteStore(str(tmp_path / "t.db"), "images")
    with pytest.raises(ConfigError, match=r"Imported 1 items .* 2 rows .* left out: "):
        import_parquet(store, str(path))
    assert set(stored(store)) == {1}
    store.close()


@pytest.mark.parametrize(
    ("vector_type", "value", "dim", "said"),
    [
        (
            pa.list_(pa.string()),
            ["a"] * DIM,
            DIM,
            r"its vector column holds list<\w+: string>, not lists of numbers",
        ),
        (pa.string(), "0.1,0.2", DIM, "its vector column holds string"),
        (
            pa.list_(pa.float32(), DIM),
            list(vector(1)),
            DIM + 1,
            f"its vectors have {DIM} values but the file says",
        ),
        (pa.list_(pa.float32()), list(vector(1)), "sixteen", "its lookalike.dim .* is not a vector size"),
    ],
)
def test_a_file_that_is_not_an_export_is_refused_before_anything_is_written(
    tmp_path: Path, vector_type: Any, value: Any, dim: Any, said: str
) -> None:
    path = tmp_path / "odd.parquet"
    schema = arrow_schema(vector_type, metadata={"lookalike.dim": str(dim)})
    item = make_item(1)
    columns = {name: [item.metadata().get(name)] for name in schema.names if name != "vector"}
    columns["vector"] = [value]
    pq.write_table(pa.table(columns, schema=schema), path)
    store = LiteStore(str(tmp_path / "t.db"), "images")
    with pytest.raises(ConfigError, match=said):
        import_parquet(store, str(path))
    assert not store.exists()  # not even an empty collection was made
    store.close()


def test_ids_that_are_not_integers_and_a_size_other_than_the_collections_are_refused(tmp_path: Path) -> None:
    store = LiteStore(str(tmp_path / "t.db"), "images")
    store.create(DIM, index="FLAT")
    items = [make_item(1)]
    schema = arrow_schema(pa.list_(pa.float32(), DIM), metadata={"lookalike.dim": str(DIM)})
    table = to_arrow(items, schema)
    texts = table.set_column(0, "id", pa.array(["1"]))
    pq.write_table(texts, tmp_path / "text-ids.parquet")
    with pytest.raises(ConfigError, match="its id column holds string, not integers"):
        import_parquet(store, str(tmp_path / "text-ids.parquet"))
    short = write_export(tmp_path / "short.parquet", [row(2, [0.25] * 8)], dim=8)
    with pytest.raises(ConfigError, match=r"8-dimensional vectors, but the collection 'images' holds 16"):
        import_parquet(store, str(short))
    assert store.count() == 0
    store.close()
