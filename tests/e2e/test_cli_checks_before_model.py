"""Options are checked before a model loads: a query image that is no regular readable file says what it
is; an empty or ambiguous catalog, or one none of whose rows can be indexed, is refused; a date window
that is none (a day that does not exist, --since after --until) is refused: each with exit 2, no model
built (the factory fails if called) and no database created. In-process with Typer's CliRunner."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.helpers import make_image


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    import lookalike.embed
    from lookalike.cli import app

    def no_model(settings: Any) -> Any:
        raise AssertionError("a model was built before the options were checked")

    monkeypatch.setattr(lookalike.embed, "create_embedder", no_model)
    monkeypatch.setenv("COLUMNS", "300")
    runner = CliRunner()
    db = str(tmp_path / "never.db")
    return lambda *args: runner.invoke(app, [*args, "--db", db])


def refused(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for word in words:
        assert word in result.output, result.output
    assert "Traceback" not in result.output


def test_a_query_image_that_is_no_regular_file_says_what_it_is(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "folder.jpg").mkdir()
    os.symlink(tmp_path / "loop-b.jpg", tmp_path / "loop-a.jpg")
    os.symlink(tmp_path / "loop-a.jpg", tmp_path / "loop-b.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    cases = {
        str(tmp_path / "fifo.jpg"): "not a regular file: a FIFO (named pipe)",
        str(tmp_path / "folder.jpg"): "not a regular file: a folder",
        "/dev/zero": "not a regular file: a character device",
        str(tmp_path / "loop-a.jpg"): "symbolic link loop",
        str(tmp_path / "dangling.jpg"): "a broken symbolic link",
        str(tmp_path / "missing.jpg"): "file not found",
    }
    for path, what in cases.items():
        refused(cli("search", "--image", path), f"--image {path} cannot be read: {what}")
    assert not (tmp_path / "never.db").exists()


def test_a_readable_query_image_passes_the_check(tmp_path: Path, cli: Callable[..., Result]) -> None:
    make_image(1).save(tmp_path / "ok.jpg")
    result = cli("search", "--image", str(tmp_path / "ok.jpg"))
    # Past the checks, the search opens the (missing) collection: it says so, still without a model.
    assert result.exit_code == 4 and "lookalike index" in result.output, result.output


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", ("empty.csv is empty",)),
        ("image,item_id,name\n", ("empty.csv has no rows: nothing to index",)),
        ("image,image\na.jpg,b.jpg\n", ("has 2 columns named 'image'",)),
        ("item_id\nA\n", ("has no 'image' column",)),
    ],
)
def test_an_empty_or_ambiguous_catalog_is_refused_before_a_model_loads(
    tmp_path: Path, cli: Callable[..., Result], content: str, words: tuple[str, ...]
) -> None:
    (tmp_path / "empty.csv").write_text(content, encoding="utf-8")
    refused(cli("index", str(tmp_path / "empty.csv")), *words)
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["delete", "--source", "S" * 257, "--yes"],
        ["delete", "--item-id", "I" * 1100, "--yes"],
        ["delete", "--source", "nul\x00shop", "--yes"],
        ["scan", "--labels", "labels.toml", "--source", "S" * 257],
    ],
)
def test_a_filter_no_stored_item_can_hold_is_refused_not_answered_with_nothing(
    args: list[str], cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "labels.toml").write_text('[labels.x]\nprompts = ["x"]\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    refused(result, "no stored item can match it")


def test_a_catalog_none_of_whose_rows_can_be_indexed_is_refused_before_a_model_loads(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    (tmp_path / "bad.csv").write_text(
        "image,item_id,created_at\n"
        "missing.jpg,A,2024-01-01\n"  # no such file
        ",B,2024-01-01\n"  # no image at all
        "ftp://host/c.jpg,C,2024-01-01\n"  # a scheme lookalike does not read
        "d.jpg,D,yesterday\n",  # a date that is none
        encoding="utf-8",
    )
    make_image(4).save(tmp_path / "d.jpg")
    refused(
        cli("index", str(tmp_path / "bad.csv")),
        "bad.csv has no row that can be indexed (4 rows, every one bad)",
        f"row 2: {tmp_path / 'missing.jpg'}: file not found",
        "row 3: no image in this row",
        "row 4: ftp://host/c.jpg: only http(s) URLs, s3:// objects and file paths can be indexed",
    )
    assert not (tmp_path / "never.db").exists()


def test_one_good_row_is_enough_for_a_catalog_to_pass_the_check(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    make_image(5).save(tmp_path / "good.jpg")
    (tmp_path / "mixed.csv").write_text("image,item_id\nmissing.jpg,A\ngood.jpg,B\n", encoding="utf-8")
    result = cli("index", str(tmp_path / "mixed.csv"))
    # Past the checks, the run builds its model: the factory that fails if called says so.
    assert result.exit_code == 70 and "a model was built before the options were checked" in result.output


WINDOWS = [
    ["search", "--text", "red dress"],
    ["flags"],
    ["audit", "--out", "audit.json"],
    ["delete", "--yes"],
    ["scan", "--labels", "labels.toml", "--out", "report.csv"],
]


@pytest.mark.parametrize("command", WINDOWS, ids=lambda c: c[0])
def test_a_reversed_date_window_is_refused_before_a_model_or_database_opens(
    tmp_path: Path, cli: Callable[..., Result], command: list[str]
) -> None:
    refused(
        cli(*command, "--since", "2024-05-02", "--until", "2024-05-01"),
        "--since 2024-05-02 is after --until 2024-05-01",
    )
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("command", WINDOWS, ids=lambda c: c[0])
@pytest.mark.parametrize("day", ["yesterday", "2024-13-01", "2024-02-30", "01/05/2024"])
def test_a_date_that_is_none_is_refused_before_a_model_or_database_opens(
    tmp_path: Path, cli: Callable[..., Result], command: list[str], day: str
) -> None:
    refused(cli(*command, "--until", day), f"'{day}' is not a date like 2023-11-19")
    assert not (tmp_path / "never.db").exists()


def test_classify_refuses_images_none_of_which_can_be_read_and_a_missing_label_file(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    from lookalike.cli import app

    labels = tmp_path / "labels.toml"
    labels.write_text('[labels.anything]\nprompts = ["a picture"]\n', encoding="utf-8")
    (tmp_path / "folder.jpg").mkdir()
    runner = CliRunner()  # classify takes no --db
    gone, folder = tmp_path / "gone.jpg", tmp_path / "folder.jpg"
    refused(
        runner.invoke(app, ["classify", str(gone), str(folder), "--labels", str(labels)]),
        f"No image to classify can be read: {gone}: file not found; {folder}: not a regular file: a folder.",
    )
    make_image(6).save(tmp_path / "ok.jpg")
    refused(
        runner.invoke(app, ["classify", str(tmp_path / "ok.jpg"), "--labels", str(tmp_path / "none.toml")]),
        "Label file not found",
    )
    one_good = runner.invoke(app, ["classify", str(gone), str(tmp_path / "ok.jpg"), "--labels", str(labels)])
    assert one_good.exit_code == 70 and "a model was built" in one_good.output  # past the checks


def test_scan_refuses_a_missing_label_file_before_the_database_opens(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    refused(cli("scan", "--labels", str(tmp_path / "none.toml"), "--out", "r.csv"), "Label file not found")
    assert not (tmp_path / "never.db").exists()
