"""`lookalike hash`, `show --json`'s hash, `bank ...` and their files, read and written by python-threatexchange."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pathlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder, make_image, write_images
from tests.unit.test_policies import PLANTED, plant, write_policy

REFERENCE = Path(__file__).parent.parent / "data" / "pdq" / "bridge-square-128x128.jpg"
REFERENCE_HASH = (
    "d8f8f1eec0f4a84f0e37022a078f63f0b36e2ed596621e1d33e6239c4e9c9b22"  # ThreatExchange pdq/python
)
threatexchange = pytest.importorskip("threatexchange")
data = pytest.importorskip("skimage.data")


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI in-process on a database in tmp_path, with the fake embedder that knows the planted concept."""
    db = str(tmp_path / "cli.db")

    def context_for(
        db_: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any
    ) -> Any:
        embedder = FakeEmbedder()
        embedder.concepts["a prohibited thing"] = embedder.embed_images([make_image(PLANTED)])[0]
        settings = load_settings(db=db_ or db, collection=collection, workers=2, **extra)
        return Context(settings, embedder=embedder)

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def photos(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea", "camera"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        paths.append(folder / f"{name}.png")
        image.save(paths[-1])
        paths.append(folder / f"{name}.jpg")
        image.save(paths[-1], quality=80)
    return paths


def test_hash_prints_the_reference_hash_as_pdqhash_and_threatexchange_compute_it(
    cli: CliRunner, tmp_path: Path
) -> None:
    import pdqhash
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file
    from threatexchange.signal_type.pdq.signal import PdqSignal

    files = [REFERENCE, *photos(tmp_path / "photos")]
    printed = json.loads(run(cli, "hash", "--json", *map(str, files)))
    assert [p["file"] for p in printed] == [str(f) for f in files]
    for row, file in zip(printed, files, strict=True):
        assert (row["pdq"], row["quality"]) == pdq_from_file(pathlib.Path(file))  # threatexchange's hasher
        assert row["pdq"] == PdqSignal.hash_from_file(pathlib.Path(file))  # its PDQ signal type
        bits, quality = pdqhash.compute(np.asarray(Image.open(file).convert("RGB")))
        assert row["pdq"] == format(int("".join(map(str, bits)), 2), "064x") and row["quality"] == quality
    # The reference implementation's own hash of ThreatExchange's test picture (tests/data/pdq/README.md).
    assert (printed[0]["pdq"], printed[0]["quality"]) == (REFERENCE_HASH, 100)
    table = run(cli, "hash", str(REFERENCE))
    assert REFERENCE_HASH in table and "100" in table


def test_hash_reports_an_unreadable_file_and_fails_when_nothing_hashes(
    cli: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "not-a-picture.jpg"
    bad.write_bytes(b"plain text")
    mixed = cli.invoke(app, ["hash", "--json", str(bad), str(REFERENCE)])
    assert mixed.exit_code == 0 and "not-a-picture.jpg" in mixed.stderr
    assert [p["pdq"] for p in json.loads(mixed.stdout)] == [REFERENCE_HASH]
    assert cli.invoke(app, ["hash", str(bad)]).exit_code == 1


def test_show_json_includes_the_stored_hash(cli: CliRunner, tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 2)
    run(cli, "index", str(tmp_path / "photos"))
    found = json.loads(run(cli, "search", "--image", str(tmp_path / "photos" / "img_0000.jpg"), "--json"))
    item = found["hits"][0]["id"] if isinstance(found, dict) else found[0]["id"]
    [shown] = json.loads(run(cli, "show", str(item), "--json"))
    from lookalike.ingest.decode import decode_image
    from lookalike.ingest.phash import pdq

    expected = pdq(decode_image((tmp_path / "photos" / "img_0000.jpg").read_bytes()).image)
    assert len(shown["pdq"]) == 64 and 0 <= shown["pdq_quality"] <= 100
    distance = bin(int(shown["pdq"], 16) ^ int(expected[0], 16)).count("1")
    assert distance <= 8  # ingest hashes the picture at the model's draft size: the same picture
    assert "pdq" in run(cli, "show", str(item))


def test_banks_are_created_listed_switched_filled_and_emptied(cli: CliRunner, tmp_path: Path) -> None:
    run(
        cli,
        "bank",
        "create",
        "csam-like",
        "--action",
        "refuse",
        "--max-distance",
        "20",
        "--label",
        "ncmec",
        "--by",
        "ana",
    )
    run(cli, "bank", "create", "stock-photos", "--kind", "allow", "--by", "ana")
    refused = cli.invoke(app, ["bank", "create", "stock-photos", "--by", "ana"])
    assert refused.exit_code == 2 and "exists already" in refused.stderr
    assert cli.invoke(app, ["bank", "create", "bad name", "--by", "a"]).exit_code == 2
    assert cli.invoke(app, ["bank", "create", "x", "--kind", "allow", "--action", "refuse"]).exit_code == 2
    added = run(cli, "bank", "add", "csam-like", REFERENCE_HASH, str(REFERENCE), "--by", "ana")
    assert "1 added" in added and "1 already there" in added  # the file hashes to the same hash
    run(cli, "bank", "disable", "csam-like", "--by", "bo", "--note", "testing")
    run(cli, "bank", "set", "csam-like", "--max-distance", "25", "--by", "bo")
    listed = {b["name"]: b for b in json.loads(run(cli, "bank", "list", "--json"))}
    assert listed["csam-like"] == {
        **listed["csam-like"],
        "kind": "block",
        "action": "refuse",
        "enabled": False,
        "max_distance": 25,
        "labels": ["ncmec"],
        "entries": 1,
        "paused": 0,
    }
    assert listed["stock-photos"]["kind"] == "allow" and listed["stock-photos"]["entries"] == 0
    run(cli, "bank", "enable", "csam-like", "--by", "bo")
    shown = json.loads(run(cli, "bank", "show", "csam-like", "--json"))
    assert shown["total"] == 1 and shown["entries"][0]["pdq"] == REFERENCE_HASH
    missing = cli.invoke(app, ["bank", "remove", "csam-like", "f" * 64, "--by", "bo"])
    assert missing.exit_code == 5
    assert "removed" in run(
        cli, "bank", "remove", "csam-like", str(shown["entries"][0]["entry"]), "--by", "bo"
    )
    assert json.loads(run(cli, "bank", "show", "csam-like", "--json"))["total"] == 0
    assert json.loads(run(cli, "bank", "alerts", "--json")) == []
    assert cli.invoke(app, ["bank", "resume", "csam-like", "1", "--by", "bo"]).exit_code == 5


def hashes_of(n: int) -> list[str]:
    rng = np.random.default_rng(n)
    return [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(n)]


@pytest.fixture()
def csv_limit() -> Any:
    """threatexchange's .te loader sets the csv module's field size limit to its file's size, for the
    whole process: put it back, or later tests reading long CSV fields fail."""
    before = csv.field_size_limit()
    yield
    csv.field_size_limit(before)


def test_bank_files_round_trip_through_threatexchange(
    cli: CliRunner, tmp_path: Path, csv_limit: None
) -> None:
    from threatexchange.cli.dataset.simple_serialization import CliIndicatorSerialization, HMASerialization
    from threatexchange.cli.dataset_cmd import DatasetCommand
    from threatexchange.exchanges.clients.fb_threatexchange.descriptor import SimpleDescriptorRollup
    from threatexchange.exchanges.fetch_state import FetchedSignalMetadata
    from threatexchange.exchanges.impl.file_api import FileCollaborationConfig, LocalFileSignalExchangeAPI
    from threatexchange.signal_type.md5 import VideoMD5Signal
    from threatexchange.signal_type.pdq.signal import PdqSignal

    listed = hashes_of(5)
    run(cli, "bank", "create", "shared", "--label", "exchange", "--by", "ana")
    run(cli, "bank", "add", "shared", *listed, "--label", "tag1", "--by", "ana")

    # tx signal file: what threatexchange's local-file exchange reads.
    signal_file = tmp_path / "out.txt"
    assert "exported 5" in run(cli, "bank", "export", "shared", str(signal_file))
    collab = FileCollaborationConfig(name="c", api="local_file", enabled=True, filename=str(signal_file))
    [delta] = LocalFileSignalExchangeAPI(collab).fetch_iter([PdqSignal], None)
    assert {signal for kind, signal in delta.updates} == set(listed)
    assert {kind for kind, _ in delta.updates} == {"pdq"}
    # ... and what it writes: `tx hash photo FILE...` prints one "pdq HASH" line a picture, a signal
    # file as the local-file exchange reads it. (Its report_opinion, which would append to such a
    # file, opens it in mode "wta" and fails in threatexchange 1.2.17.)
    from threatexchange.cli.hash_cmd import HashCommand
    from threatexchange.content_type.photo import PhotoContent

    class Settings:
        def get_signal_types_for_content(self, content: object) -> list[type]:
            return [PdqSignal]

    pictures = photos(tmp_path / "pictures")[:3]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        HashCommand(PhotoContent, None, [pathlib.Path(p) for p in pictures]).execute(Settings())  # type: ignore[arg-type]
    written = tmp_path / "tx-written.txt"
    written.write_text(printed.getvalue() + f"{VideoMD5Signal.get_name()} d41d8cd98f00b204e9800998ecf8427e\n")
    fresh = [line.split()[1] for line in printed.getvalue().splitlines()]
    assert len(fresh) == 3 and all(line.startswith("pdq ") for line in printed.getvalue().splitlines())
    run(cli, "bank", "create", "from-tx", "--by", "ana")
    imported = cli.invoke(app, ["bank", "import", "from-tx", str(written), "--by", "ana"])
    assert imported.exit_code == 0 and "imported 3" in imported.stdout and "1 video_md5" in imported.stderr

    # tx dataset --csv: what `tx dataset -P --csv` prints, read by import; our export read as tx's columns.
    out = io.StringIO()
    writer = csv.DictWriter(out, ["signal_type", "signal_str", "collab", "category", "tags"])
    writer.writeheader()
    command = DatasetCommand(print_signals=True, csv=True)
    for value in fresh:
        command._print_csv(writer, "Sample Data", PdqSignal, value, FetchedSignalMetadata())
    dataset = tmp_path / "dataset.csv"
    dataset.write_text(out.getvalue(), encoding="utf-8")
    run(cli, "bank", "create", "from-csv", "--by", "ana")
    assert "imported 3" in run(cli, "bank", "import", "from-csv", str(dataset), "--by", "ana")
    exported_csv = tmp_path / "shared.csv"
    run(cli, "bank", "export", "shared", str(exported_csv))
    rows = list(csv.DictReader(exported_csv.open(encoding="utf-8")))
    assert {r["signal_str"] for r in rows} == set(listed)
    assert {(r["signal_type"], r["collab"], r["category"], r["tags"]) for r in rows} == {
        ("pdq", "shared", "POSITIVE_CLASS", "tag1")
    }
    run(cli, "bank", "create", "again", "--by", "ana")
    assert "imported 5" in run(cli, "bank", "import", "again", str(exported_csv), "--by", "ana")
    again = json.loads(run(cli, "bank", "show", "again", "--json"))["entries"]
    assert {(e["pdq"], tuple(e["labels"])) for e in again} == {(h, ("tag1",)) for h in listed}

    # .te state files: threatexchange's CLI and HMA serialisations, both ways.
    state = tmp_path / "state"
    state.mkdir()
    te = state / "simple.HASH_PDQ.te"
    run(cli, "bank", "export", "shared", str(te))
    loaded = CliIndicatorSerialization.load(state)
    assert {(x.indicator_type, x.indicator) for x in loaded} == {("HASH_PDQ", h) for h in listed}
    assert all(x.rollup.labels == {"tag1"} for x in loaded)
    other = tmp_path / "state2"
    other.mkdir()
    CliIndicatorSerialization.store(
        other,
        [
            CliIndicatorSerialization("HASH_PDQ", h, SimpleDescriptorRollup(7, "2026-01-02", {"a", "b"}))
            for h in fresh
        ],
    )
    run(cli, "bank", "create", "from-te", "--by", "ana")
    assert "imported 3" in run(
        cli, "bank", "import", "from-te", str(other / "simple.HASH_PDQ.te"), "--by", "ana"
    )
    labels = {
        tuple(sorted(e["labels"]))
        for e in json.loads(run(cli, "bank", "show", "from-te", "--json"))["entries"]
    }
    assert labels == {("a", "b")}
    hma = tmp_path / "hma.te"
    hma.write_text("".join(f"{h},{n},7,2026-01-02,x\n" for n, h in enumerate(fresh)), encoding="utf-8")
    assert (
        HMASerialization.from_csv_row(hma.read_text().splitlines()[0].split(","), "HASH_PDQ").indicator
        == fresh[0]
    )
    run(cli, "bank", "create", "from-hma", "--by", "ana")
    assert "imported 3" in run(cli, "bank", "import", "from-hma", str(hma), "--by", "ana")


def test_a_bad_hash_file_is_refused_whole_and_imports_nothing(cli: CliRunner, tmp_path: Path) -> None:
    run(cli, "bank", "create", "b", "--by", "ana")
    bad = tmp_path / "bad.txt"
    bad.write_text(f"pdq {hashes_of(1)[0]}\npdq not-a-hash\n", encoding="utf-8")
    refused = cli.invoke(app, ["bank", "import", "b", str(bad), "--by", "ana"])
    assert refused.exit_code == 2 and "line 2" in refused.stderr
    assert json.loads(run(cli, "bank", "show", "b", "--json"))["total"] == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    assert cli.invoke(app, ["bank", "import", "b", str(empty), "--by", "ana"]).exit_code == 2
    assert cli.invoke(app, ["bank", "import", "nobank", str(bad), "--by", "ana"]).exit_code == 2
    assert cli.invoke(app, ["bank", "export", "b", str(tmp_path / "x.txt"), "--format", "xml"]).exit_code == 2


def test_a_flag_bank_match_at_ingest_flags_the_picture_like_a_policy(cli: CliRunner, tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 4)
    run(cli, "bank", "create", "known", "--label", "counterfeit", "--by", "ana")
    run(cli, "bank", "add", "known", str(tmp_path / "photos" / "img_0002.jpg"), "--by", "ana")
    report = json.loads(run(cli, "index", str(tmp_path / "photos"), "--json"))
    assert report["indexed"] == 4 and report["blocked"] == 0
    flags = json.loads(run(cli, "flags", "--json"))["flags"]
    assert [(f["policy"], f["label"], f["uri"].endswith("img_0002.jpg")) for f in flags] == [
        ("bank:known", "counterfeit", True)
    ]
    assert flags[0]["score"] <= 8  # the PDQ distance of the picture to its own full-size hash


def test_the_audit_carries_the_item_its_hash_the_policy_or_bank_and_the_score(
    cli: CliRunner, tmp_path: Path
) -> None:
    run(cli, "policy", "add", str(write_policy(tmp_path)))
    write_images(tmp_path / "photos", 3)
    plant(tmp_path / "photos")
    run(cli, "index", str(tmp_path / "photos"), "--source", "shop-7")
    flags = json.loads(run(cli, "flags", "--json"))["flags"]
    doomed = next(f for f in flags if f["uri"].endswith("planted_a.png"))
    run(cli, "review", str(doomed["id"]), "--confirm", "--take-down", "--by", "bo", "--note", "contraband")
    entry = json.loads(run(cli, "bank", "show", "takedowns", "--json"))["entries"][0]
    run(cli, "bank", "remove", "takedowns", str(entry["entry"]), "--by", "cy", "--note", "appeal")
    out = tmp_path / "audit.csv"
    assert "2 audit records" in run(cli, "audit", "--out", str(out))
    review_row, bank_row = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {
        k: review_row[k] for k in ("record", "decision", "reviewer", "took_down", "item_id", "source")
    } == {
        "record": "review",
        "decision": "confirmed",
        "reviewer": "bo",
        "took_down": "True",
        "item_id": "planted_a",
        "source": "shop-7",
    }
    assert review_row["uri"].endswith("planted_a.png") and len(review_row["sha256"]) == 64
    assert (
        review_row["pdq"] == entry["pdq"] and review_row["policy"] == "prohibited" and not review_row["bank"]
    )
    assert (
        float(review_row["score"]) >= 0.95
        and review_row["at"].endswith("Z")
        and review_row["item"] == str(doomed["item"])
    )
    assert {k: bank_row[k] for k in ("record", "decision", "reviewer", "note", "bank", "flag", "sha256")} == {
        "record": "bank",
        "decision": "unblock",
        "reviewer": "cy",
        "note": "appeal",
        "bank": "takedowns",
        "flag": str(doomed["id"]),
        "sha256": review_row["sha256"],
    }
    assert bank_row["uri"] == review_row["uri"] and bank_row["item_id"] == "planted_a"
    as_json = tmp_path / "audit.json"
    run(cli, "audit", "--out", str(as_json))
    records = json.loads(as_json.read_text(encoding="utf-8"))["decisions"]
    assert [r["record"] for r in records] == ["review", "bank"] and records[0]["pdq"] == entry["pdq"]


def test_match_hashes_shows_each_match_source(cli: CliRunner, tmp_path: Path) -> None:
    write_images(tmp_path / "photos", 2)
    run(cli, "index", str(tmp_path / "photos"), "--source", "shop-9")
    listing = tmp_path / "list.txt"
    listing.write_text("0" * 64 + "\n", encoding="utf-8")
    found = json.loads(run(cli, "match-hashes", str(listing), "--max-distance", "256", "--json"))
    assert {m["source"] for m in found} == {"shop-9"}
    assert "shop-9" in run(cli, "match-hashes", str(listing), "--max-distance", "256")


def test_a_large_import_is_checked_whole_then_written_in_batches_and_can_be_run_again(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.usecases import banks

    monkeypatch.setattr(banks, "IMPORT_BATCH", 7)
    listed = hashes_of(50)
    run(cli, "bank", "create", "big", "--by", "ana")
    late = tmp_path / "late.txt"
    late.write_text("".join(f"pdq {h}\n" for h in listed) + "pdq 123\n", encoding="utf-8")
    refused = cli.invoke(app, ["bank", "import", "big", str(late), "--by", "ana"])
    assert refused.exit_code == 2 and "line 51" in refused.stderr
    assert json.loads(run(cli, "bank", "show", "big", "--json"))["total"] == 0  # nothing of the first 50
    good = tmp_path / "good.txt"
    good.write_text("".join(f"pdq {h}\n" for h in listed), encoding="utf-8")
    assert "imported 50 hashes into bank big, 0 already there" in run(
        cli, "bank", "import", "big", str(good), "--by", "ana"
    )
    assert "imported 0 hashes into bank big, 50 already there" in run(
        cli, "bank", "import", "big", str(good), "--by", "ana"
    )
