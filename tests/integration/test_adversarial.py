"""The adversarial corpus (tests/adversarial.py) indexed in one run, in-process and through the CLI:
no run aborts or hangs, every bad file is reported with its reason, every good one is indexed, and
what is printed is literal."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from lookalike.config import load_settings
from lookalike.ingest import IngestReport
from lookalike.usecases import Context, ingest
from tests.adversarial import GOOD, build_corpus, shown
from tests.adversarial_catalogs import catalogs
from tests.helpers import FakeEmbedder, jpeg_bytes, make_image

T = TypeVar("T")
LIMITS = {"max_image_pixels": 4_000_000, "max_download_mb": 1.0, "fetch_timeout_s": 5.0, "workers": 2}


def bounded(seconds: float, work: Callable[[], T]) -> T:
    """Run ``work`` in a thread and fail the test if it has not finished within ``seconds``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a hang"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def service_at(tmp_path: Path) -> Context:
    return Context(load_settings(db=str(tmp_path / "adversarial.db"), **LIMITS), embedder=FakeEmbedder())


def stored_uris(service: Context) -> set[str]:
    return {item.uri for batch in service.store.iter_items(with_vector=False) for item in batch}


def test_the_corpus_is_indexed_in_one_run_with_every_bad_file_reported(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    kinds = build_corpus(folder)
    assert len(kinds) >= 50
    service = service_at(tmp_path)
    report: IngestReport = bounded(120, lambda: ingest.index(service, str(folder), source="corpus"))
    reasons = {skipped.uri: skipped.reason for skipped in report.skipped}
    uris = stored_uris(service)
    for kind in kinds:
        for name in kind.files:
            where = shown(folder, name)
            if kind.expect == GOOD:
                assert os.path.realpath(os.fsencode(folder) + b"/" + name).decode() in uris, kind.name
                assert where not in reasons, (kind.name, reasons.get(where))
            else:
                assert where in reasons, f"{kind.name}: {where} not reported"
                assert kind.expect.lower() in reasons[where].lower(), (kind.name, reasons[where])
    assert any("too long" in reason.lower() for reason in reasons.values())  # the deep path
    good = sum(len(kind.files) for kind in kinds if kind.expect == GOOD)
    assert report.indexed + report.already_indexed == good  # alias.jpg is plain.jpg
    assert report.seen == report.indexed + report.already_indexed + len(report.skipped)
    dated = {
        Path(item.uri).name: item.created_at
        for batch in service.store.iter_items(with_vector=False)
        for item in batch
        if Path(item.uri).name in ("future.jpg", "past.jpg")
    }
    now = time.time()
    assert len(dated) == 2 and all(now - 600 < ts <= now for ts in dated.values()), dated  # indexing time
    again = bounded(120, lambda: ingest.index(service, str(folder), source="corpus"))
    assert again.indexed == 0 and len(again.skipped) == len(report.skipped)


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    """`lookalike ...` in-process with the fake embedder, over a database in tmp_path."""
    from lookalike.cli import common
    from lookalike.cli.common import app

    def service_for(db: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any) -> Any:
        extra = {key: value for key, value in extra.items() if value is not None}
        settings = load_settings(db=str(tmp_path / "cli.db"), **{**LIMITS, **extra})
        return Context(settings, embedder=FakeEmbedder())

    monkeypatch.setattr(common, "context_for", service_for)
    monkeypatch.setenv("COLUMNS", "400")
    runner = CliRunner()
    return lambda *args: bounded(120, lambda: runner.invoke(app, list(args)))


def test_the_cli_indexes_the_corpus_and_prints_names_literally(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    folder = tmp_path / "corpus"
    build_corpus(folder)
    result = cli("index", str(folder))
    assert result.exit_code == 0, result.output
    output = result.output
    assert "Traceback" not in output and "unexpected error" not in output
    assert "k42_[reverse]MARKUP[blink].jpg" not in output  # good files are not in the skipped table
    assert "\x1b[31m" not in output and "\u202e" not in output  # control characters never reach the terminal
    assert "fifo.jpg" in output and "FIFO" in output
    assert "caf\\xe9-\\xff.jpg" in output  # the non-UTF-8 name, shown as escapes
    assert "indexed" in output and "skipped" in output


def test_names_with_markup_and_escapes_are_printed_as_they_are(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    for i, name in enumerate(["k42_[reverse]MARKUP[blink].jpg", "x][/y]b.jpg", "\x1b[2Jclear.jpg"]):
        # "x][" is a folder: a printed path holds the closing tag "[/y]" (no file name can hold "/")
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"not an image " + str(i).encode())  # so that they are listed as skipped
    result = cli("index", str(folder))
    assert result.exit_code == 1  # nothing indexed, everything skipped
    assert "k42_[reverse]MARKUP[blink].jpg" in result.output
    assert "x][/y]b.jpg" in result.output
    assert "\\x1b[2Jclear.jpg" in result.output and "\x1b[2J" not in result.output
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    error = cli("index", str(folder / "[/nope]" / "\x1b[5m"))
    assert error.exit_code == 2 and "[/nope]" in error.output and "\x1b[5m" not in error.output


def _prepare_catalog_images(folder: Path) -> None:
    for name in ("bom.jpg", "wide.jpg"):
        (folder / name).write_bytes(jpeg_bytes(make_image(hash(name) % 1000)))


@pytest.mark.parametrize("catalog", catalogs(), ids=lambda c: c.file)
def test_an_abusive_catalog_is_a_clear_error_or_a_run_with_every_row_accounted(
    tmp_path: Path, cli: Callable[..., Any], catalog: Any
) -> None:
    folder = tmp_path / "catalogs"
    folder.mkdir()
    _prepare_catalog_images(folder)
    catalog.make(folder)
    result = cli("index", str(folder / catalog.file))
    output = result.output
    assert "Traceback" not in output and "unexpected error" not in output, output
    if catalog.error is not None:
        assert result.exit_code == 2, output
        assert catalog.error.replace("{folder}", str(folder)).lower() in output.lower(), output
        assert not (tmp_path / "cli.db").exists() or "indexed" not in output
        return
    assert result.exit_code in (0, 1), output  # 1: nothing could be indexed, said so
    assert f"indexed {catalog.good} new images" in output, output


def test_the_hostile_catalog_reports_each_row_with_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "catalogs"
    folder.mkdir()
    (hostile,) = [c for c in catalogs() if c.file == "hostile.csv"]
    hostile.make(folder)
    service = service_at(tmp_path)
    report = bounded(60, lambda: ingest.index(service, str(folder / "hostile.csv")))
    assert report.indexed == 4
    reasons = [s.reason for s in report.skipped]
    expected = [
        "FIFO",
        "character device",
        "cannot read",
        "not found",
        "a folder",
        "not an image",  # ../../etc/passwd: the command line reads what its user can
        "only http(s)",
        "only http(s)",
        "non-public",
        "non-public",
        "longer than 4096",
        "no image",
    ]
    assert len(reasons) == len(expected), reasons
    for words in expected:
        assert any(words in reason for reason in reasons), (words, reasons)
    names = {item.name for batch in service.store.iter_items(with_vector=False) for item in batch}
    assert "[bold red]markup[/] name" in names and "\x1b[2Jescape" in names  # stored as given
