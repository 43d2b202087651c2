"""demo-data, eval and finetune as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import lookalike
from tests.e2e.test_cli import env  # noqa: F401  (env is a fixture)

pytestmark = pytest.mark.slow


def test_demo_data_index_eval_finetune(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    made = lookalike(env, "demo-data", str(tmp_path / "demo"), "--n", "60", "--seed", "5")
    assert made.returncode == 0, made.stderr
    assert "wrote 60 items" in made.stderr and "lookalike eval --queries" in made.stderr
    catalog, queries = tmp_path / "demo" / "catalog.csv", tmp_path / "demo" / "queries.csv"

    assert lookalike(env, "index", str(catalog)).returncode == 0
    result = lookalike(env, "eval", "--queries", str(queries), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    for direction in ("text_to_image", "image_to_image"):
        assert {"recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"} <= set(payload[direction])
        assert 0.0 <= payload[direction]["recall@1"] <= payload[direction]["recall@10"] <= 1.0
    table = lookalike(env, "eval", "--queries", str(queries))
    assert "text to image" in table.stdout and "ndcg@10" in table.stdout

    tuned = tmp_path / "tuned"
    run = lookalike(
        env, "finetune", "--catalog", str(catalog), "--out", str(tuned), "--epochs", "2", "--lr", "1e-3"
    )
    assert run.returncode == 0, run.stderr
    assert "epoch 2:" in run.stderr and "before" in run.stdout and "after" in run.stdout
    assert (tuned / "model-config.json").is_file() and (tuned / "checkpoint.pt").is_file()
    # A run that cannot beat its start (a learning rate too small to move anything) says so plainly.
    flat = lookalike(
        env,
        "finetune",
        "--catalog",
        str(catalog),
        "--out",
        str(tmp_path / "flat"),
        "--epochs",
        "1",
        "--lr",
        "1e-12",
    )
    assert flat.returncode == 0, flat.stderr
    assert "No epoch beat the starting model" in flat.stdout and "use: --model" not in flat.stdout

    # The written files load through --model / --pretrained. The collection was built by the base
    # model, which it remembers: searching it with the tuned one is refused, naming both.
    tuned_env = {
        **env,
        "LOOKALIKE_MODEL": str(tuned / "model-config.json"),
        "LOOKALIKE_PRETRAINED": str(tuned / "checkpoint.pt"),
    }
    refused = lookalike(tuned_env, "search", "--text", "red floral dress", "--json")
    assert refused.returncode == 2
    assert str(tuned / "checkpoint.pt") in refused.stderr and env["LOOKALIKE_PRETRAINED"] in refused.stderr
    tuned_env["LOOKALIKE_COLLECTION"] = "tuned"
    assert lookalike(tuned_env, "index", str(catalog)).returncode == 0
    found = lookalike(tuned_env, "search", "--text", "red floral dress", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"]


def test_eval_with_a_malformed_query_file_is_a_clear_error(tmp_path: Path, env: dict[str, str]) -> None:  # noqa: F811
    bad = tmp_path / "queries.csv"
    bad.write_text("text,ids\nred,a\n", encoding="utf-8")
    result = lookalike(env, "eval", "--queries", str(bad))
    assert result.returncode == 2
    assert "needs the columns 'query' and 'relevant'" in result.stderr and "Traceback" not in result.stderr
