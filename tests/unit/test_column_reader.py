"""A search's hits are read straight from the Arrow buffers: the values are Arrow's own, whatever the
column holds (multi-byte text, empty strings, nulls, a sliced or chunked table, a saved file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from lookalike.store.models import SCALAR_FIELDS
from lookalike.store.rows import ColumnReader, arrow_schema, from_arrow, to_arrow
from tests.store_model import make_item


def _table(rows: int) -> pa.Table:
    items = [
        make_item(i, month=i % 3, source=i % 3, name=("萨摩耶 " * (i % 4)).strip())
        for i in range(1, rows + 1)
    ]
    return to_arrow(items, arrow_schema())


def _same(table: pa.Table, rows: list[int]) -> None:
    reader = ColumnReader(table, SCALAR_FIELDS)
    picked = np.asarray(rows, dtype=np.int64)
    expected = table.take(pa.array(picked)).to_pydict()
    expected["tags"] = [tuple(tags) for tags in expected["tags"]]  # lists of texts are read as tuples
    assert reader.read(picked) == {name: expected[name] for name in SCALAR_FIELDS}
    assert from_arrow(reader.read(picked)) == from_arrow(expected)


def test_values_read_from_the_buffers_are_arrows(tmp_path: Path) -> None:
    table = _table(40)
    for rows in ([0], [39, 0, 17, 17], list(range(40)), []):
        _same(table, rows)
    _same(table.slice(5, 20), [0, 19, 7])  # a slice: its buffers start before its first row
    feather.write_feather(table, tmp_path / "t.arrow", compression="uncompressed")
    _same(feather.read_table(tmp_path / "t.arrow", memory_map=True), [3, 1, 38])


def test_columns_arrow_must_convert_go_through_arrow() -> None:
    table = _table(10)
    with_nulls = table.set_column(
        table.schema.get_field_index("label"), "label", pa.array([None, "cat"] * 5, pa.string())
    )
    _same(with_nulls, [0, 1, 9])
    chunked = pa.concat_tables([table.slice(0, 4), table.slice(4, 6)])  # two chunks per column
    assert chunked.column("id").num_chunks == 2
    _same(chunked, [0, 5, 9])
    empty_names = table.set_column(table.schema.get_field_index("name"), "name", pa.array([""] * 10))
    _same(empty_names, [2, 4])
