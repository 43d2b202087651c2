"""Fine-tuning the tiny open_clip model on the synthetic catalog, and evaluating a collection."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lookalike.config import load_settings
from lookalike.errors import ConfigError
from lookalike.quality import METRICS
from lookalike.quality.demo import write_demo_data
from lookalike.train import Options
from lookalike.usecases import Context, ingest, quality, training

pytestmark = pytest.mark.slow


def service_for(tmp_path: Path, model: Path, pretrained: Path, db: str) -> Context:
    settings = load_settings(
        model=str(model), pretrained=str(pretrained), db=str(tmp_path / db), runtime="torch"
    )
    return Context(settings)


def test_fine_tuning_raises_held_out_recall_and_the_result_loads_as_a_checkpoint(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    config, checkpoint = tiny_model
    made = write_demo_data(tmp_path / "demo", n=300, seed=0, size=128)
    with made.catalog.open("a", encoding="utf-8") as handle:  # one unreadable picture must not stop anything
        handle.write("images/broken.jpg,sku-broken,red dress,shop-a,2026-02-01\n")
    (tmp_path / "demo" / "images" / "broken.jpg").write_bytes(b"not a jpeg")

    base = service_for(tmp_path, config, checkpoint, "base.db")
    pairs, skipped = training.training_pairs(base, str(made.catalog))
    assert len(pairs) == 300
    assert [s.uri.endswith("broken.jpg") for s in skipped] == [True]

    out = tmp_path / "tuned"
    epochs: list[int] = []
    result = training.finetune(
        base,
        pairs,
        str(out),
        Options(epochs=12, lr=1e-3, patience=4),
        on_epoch=lambda e, _loss, _m: epochs.append(e),
    )
    assert result.before["recall@5"] < 0.2
    assert result.after["recall@5"] >= max(0.5, result.before["recall@5"] + 0.3)
    assert result.held_out_pairs + result.train_pairs == 300 and result.held_out_pairs >= 30
    assert epochs == list(range(1, result.epochs_run + 1))
    best = next(h for h in result.history if h["epoch"] == result.best_epoch)
    assert result.after == {name: best[name] for name in METRICS}  # the kept weights are the best epoch's
    report = json.loads((out / "finetune.json").read_text(encoding="utf-8"))
    assert report["after"] == result.after and report["options"]["lr"] == 1e-3

    # The written config and checkpoint load through the normal --model / --pretrained path,
    # and the collection indexed with them answers the demo queries better.
    ingest.index(base, str(made.catalog))
    before = quality.evaluate(base, str(made.queries)).metrics["text_to_image"]
    tuned = service_for(tmp_path, out / "model-config.json", out / "checkpoint.pt", "tuned.db")
    ingest.index(tuned, str(made.catalog))
    after = quality.evaluate(tuned, str(made.queries)).metrics["text_to_image"]
    assert before is not None and after is not None
    assert after["recall@5"] >= before["recall@5"] + 0.2
    base.close()
    tuned.close()


def test_held_out_split_is_stable_and_too_small_a_catalog_is_refused(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    from lookalike.train.finetune import split_pairs

    config, checkpoint = tiny_model
    made = write_demo_data(tmp_path / "demo", n=6, seed=0, size=64)
    service = service_for(tmp_path, config, checkpoint, "x.db")
    pairs, _ = training.training_pairs(service, str(made.catalog))
    assert split_pairs(pairs, 0.5, seed=1) == split_pairs(pairs, 0.5, seed=1)
    with pytest.raises(ConfigError, match="at least 8 training"):
        training.finetune(service, pairs, str(tmp_path / "out"), Options())
    assert not (tmp_path / "out").exists()


def test_eval_reports_unreadable_image_queries_and_keeps_going(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    config, checkpoint = tiny_model
    made = write_demo_data(tmp_path / "demo", n=40, seed=2, size=64)
    rows = list(csv.DictReader(made.queries.open(encoding="utf-8")))
    rows.append({"kind": "image", "query": "queries/missing.jpg", "relevant": "sku-00001"})
    with made.queries.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["kind", "query", "relevant"])
        writer.writeheader()
        writer.writerows(rows)
    service = service_for(tmp_path, config, checkpoint, "e.db")
    ingest.index(service, str(made.catalog))
    report = quality.evaluate(service, str(made.queries))
    assert report.counts["image_to_image"] == made.image_queries
    assert report.counts["text_to_image"] == made.text_queries
    assert len(report.failed) == 1 and "missing.jpg" in report.failed[0][0]
    payload = report.to_dict()
    assert set(payload["text_to_image"]) == {"recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "queries"}
    # An indexed picture of an item finds that item, so image queries of catalog pictures score 1.
    copies = tmp_path / "copies.csv"
    copies.write_text(
        "query,relevant\n" + "".join(f"demo/images/sku-{i:05d}.jpg,sku-{i:05d}\n" for i in range(10)),
        encoding="utf-8",
    )
    exact = quality.evaluate(service, str(copies)).metrics["image_to_image"]
    assert exact is not None and exact["recall@1"] == 1.0
    service.close()
