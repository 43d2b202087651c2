"""Keyword and hybrid search as people use them: ``search --keywords`` / ``--hybrid`` in-process with
the fake embedder, and the API's ``keywords`` / ``hybrid`` fields through TestClient (JSON and form)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.store import LiteStore
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder, make_image

ROWS = [  # item_id, name, category, tags
    ("SKU1", "Levi's 501 Original Jeans", "jeans", "denim|sale"),
    ("SKU2", "Levi's 511 slim jeans", "jeans", "denim"),
    ("SKU3", "Merino wool crew sweater", "knitwear", "wool|winter"),
    ("SKU4", "Cotton crew T-shirt", "tops", "summer|sale"),
    ("SKU5", "萨摩耶 plush toy", "toys", "萨摩耶|gift"),
    ("SKU6", "Red floral dress", "dresses", "red|floral|sale"),
]


def write_catalog(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,item_id,name,category,tags,source,created_at"]
    for i, (item_id, name, category, tags) in enumerate(ROWS):
        make_image(i).save(folder / f"{item_id}.jpg")
        source = "shop-a" if i % 2 == 0 else "shop-b"
        lines.append(f'{item_id}.jpg,{item_id},"{name}",{category},"{tags}",{source},2024-0{i % 3 + 1}-05')
    catalog = folder / "catalog.csv"
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return catalog


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    embedder = FakeEmbedder()

    def context_for(db: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any) -> Any:
        settings = load_settings(db=db or str(tmp_path / "h.db"), collection=collection, workers=2, **extra)
        return Context(settings, embedder=embedder)

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    runner = CliRunner()
    ran = runner.invoke(app, ["index", str(write_catalog(tmp_path / "cat"))])
    assert ran.exit_code == 0, ran.output
    return runner


def run(cli: CliRunner, *args: str) -> dict[str, Any]:
    ran = cli.invoke(app, ["search", "-k", "10", "--json", *args])
    assert ran.exit_code == 0, ran.output
    payload: dict[str, Any] = json.loads(ran.stdout)
    return payload


def ids(payload: dict[str, Any]) -> list[str]:
    return [hit["item_id"] for hit in payload["hits"]]


def test_keywords_find_brands_model_numbers_materials_and_chinese_words(cli: CliRunner) -> None:
    assert ids(run(cli, "--text", "levis 501", "--keywords"))[0] == "SKU1"
    assert ids(run(cli, "--text", "LEVI'S", "--keywords")) in (["SKU1", "SKU2"], ["SKU2", "SKU1"])
    assert ids(run(cli, "--text", "merino", "--keywords")) == ["SKU3"]
    assert ids(run(cli, "--text", "萨摩耶", "--keywords")) == ["SKU5"]
    assert ids(run(cli, "--text", "knitwear", "--keywords")) == ["SKU3"]  # the category
    assert sorted(ids(run(cli, "--text", "sale", "--keywords"))) == ["SKU1", "SKU4", "SKU6"]  # a tag
    assert ids(run(cli, "--text", "cashmere", "--keywords")) == []
    # Filters narrow the keyword hits too.
    assert ids(run(cli, "--text", "sale", "--keywords", "--category", "tops")) == ["SKU4"]
    assert ids(run(cli, "--text", "sale", "--keywords", "--tag", "red")) == ["SKU6"]
    assert ids(run(cli, "--text", "sale", "--keywords", "--source", "shop-a")) == ["SKU1"]
    assert ids(run(cli, "--text", "jeans", "--keywords", "--since", "2024-02-01")) == ["SKU2"]
    # A keyword hit has the shape of any hit, its score BM25's.
    keyword_hit = run(cli, "--text", "merino", "--keywords")["hits"][0]
    vector_hit = run(cli, "--text", "merino")["hits"][0]
    assert set(keyword_hit) == set(vector_hit) and "ranks" not in keyword_hit and keyword_hit["score"] > 0


def test_hybrid_hits_hold_every_item_a_list_found_with_their_ranks(cli: CliRunner) -> None:
    fused = run(cli, "--text", "merino wool", "--hybrid")
    assert len(fused["hits"]) == len(ROWS)  # the vector side ranks every item
    top = fused["hits"][0]
    assert top["item_id"] == "SKU3" and top["ranks"]["keyword"] == 1 and top["ranks"]["vector"] >= 1
    assert all(hit["ranks"]["vector"] is not None for hit in fused["hits"])
    assert [h["ranks"]["keyword"] for h in fused["hits"]].count(None) == len(ROWS) - 1
    scores = [hit["score"] for hit in fused["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert top["score"] == pytest.approx(1 / 61 + 1 / (60 + top["ranks"]["vector"]), abs=1e-6)
    small_k = run(cli, "--text", "merino wool", "--hybrid", "--rrf-k", "1")["hits"][0]
    assert small_k["score"] == pytest.approx(1 / 2 + 1 / (1 + small_k["ranks"]["vector"]), abs=1e-6)
    weighted = run(cli, "--text", "merino wool", "--hybrid", "--keyword-weight", "1")
    assert ids(weighted)[0] == "SKU3"
    # Filters apply to both sides: SKU1 is the only jeans on sale, so both lists rank it.
    assert ids(run(cli, "--text", "sale", "--hybrid", "--category", "jeans")) == ["SKU1", "SKU2"]
    paged = run(cli, "--text", "merino wool", "--hybrid", "-k", "2", "--offset", "1")
    assert ids(paged) == ids(fused)[1:3]
    table = cli.invoke(app, ["search", "--text", "merino wool", "--hybrid"])
    assert table.exit_code == 0 and "SKU3" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--id", "1", "--hybrid"], "--hybrid fuses the keyword and the vector hits of a text query"),
        (["--item-id", "SKU1", "--keywords"], "--keywords searches names, categories and tags by words"),
        (["--text", "x", "--hybrid", "--keywords"], "not both"),
        (["--text", "x", "--keyword-weight", "0.5"], "give --hybrid too"),
        (["--text", "x", "--rrf-k", "10"], "give --hybrid too"),
        (["--text", "x", "--hybrid", "--keyword-weight", "0.5", "--rrf-k", "5"], "not both"),
        (["--text", "x", "--hybrid", "--min-score", "0.2"], "--min-score is a cosine"),
        (["--text", "x", "--hybrid", "--keyword-weight", "1.5"], "--keyword-weight"),
        (["--text", "x", "--hybrid", "--rrf-k", "0"], "--rrf-k"),
    ],
)
def test_bad_keyword_options_are_clear_errors(cli: CliRunner, args: list[str], message: str) -> None:
    ran = cli.invoke(app, ["search", *args])
    assert ran.exit_code == 2, ran.output
    assert message in ran.output and "Traceback" not in ran.output


def test_an_image_only_collection_refuses_hybrid_and_still_searches_by_keywords(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LiteStore, "model", lambda self: "efficientnet-lite0:imagenet")
    refused = cli.invoke(app, ["search", "--text", "merino", "--hybrid"])
    assert (
        refused.exit_code == 2 and "embeds images only" in refused.output and "--keywords" in refused.output
    )
    assert ids(run(cli, "--text", "merino", "--keywords")) == ["SKU3"]


def test_the_api_takes_hybrid_and_keywords_as_json_and_as_form_fields(tmp_path: Path) -> None:
    from lookalike.usecases import ingest

    service = Context(load_settings(db=str(tmp_path / "api.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(service, str(write_catalog(tmp_path / "cat")))
    with TestClient(create_app(service)) as api:
        found = api.post("/search", json={"text": "levis 501", "keywords": True})
        assert found.status_code == 200, found.text
        assert found.json()["hits"][0]["item_id"] == "SKU1" and "ranks" not in found.json()["hits"][0]
        fused = api.post("/search", json={"text": "merino", "hybrid": True, "rrf_k": 10, "tags": ["wool"]})
        assert fused.status_code == 200, fused.text
        assert [(h["item_id"], h["ranks"]["keyword"]) for h in fused.json()["hits"]] == [("SKU3", 1)]
        form = {"text": (None, "merino"), "hybrid": (None, "true"), "keyword_weight": (None, "0.7")}
        weighted = api.post("/search", files=form)  # multipart form data, as a page's form sends it
        assert weighted.status_code == 200, weighted.text
        assert weighted.json()["hits"][0]["item_id"] == "SKU3"
        plain = api.post("/search", json={"text": "merino"}).json()["hits"][0]
        assert "ranks" not in plain  # a hit keeps its shape unless it is a hybrid one
        image = (tmp_path / "cat" / "SKU1.jpg").read_bytes()
        # Out of range or not a boolean: the body's validation (422); contradictions: a clear 400.
        for bad, status in (
            ({"json": {"text": "x", "hybrid": True, "keyword_weight": 2}}, 422),
            ({"json": {"text": "x", "hybrid": True, "rrf_k": 0}}, 422),
            ({"json": {"text": "x", "hybrid": "maybe"}}, 422),
            ({"json": {"id": 1, "hybrid": True}}, 400),
            ({"json": {"text": "x", "keyword_weight": 0.5}}, 400),
            ({"json": {"text": "x", "keywords": True, "min_score": 0.1}}, 400),
            ({"data": {"hybrid": "true"}, "files": {"image": ("q.jpg", image, "image/jpeg")}}, 400),
        ):
            answer = api.post("/search", **bad)  # type: ignore[arg-type]
            assert answer.status_code == status, (bad, answer.text)
            if status == 400:
                assert "hybrid" in answer.json()["detail"] or "keywords" in answer.json()["detail"]


def test_keyword_and_hybrid_hits_are_grouped_per_product(cli: CliRunner, tmp_path: Path) -> None:
    """The page asks for both at once (keywords too, one per product): a product with three pictures
    of the same words fills one slot, and -k and --offset count products."""
    folder = tmp_path / "more"
    folder.mkdir()
    lines = ["image,item_id,name,category,tags,source,created_at"]
    for i in range(3):  # SKU1 gets two more pictures, with its words
        make_image(20 + i).save(folder / f"extra{i}.jpg")
        lines.append(f'extra{i}.jpg,SKU1,"Levi\'s 501 Original Jeans",jeans,"denim|sale",shop-a,2024-01-05')
    (folder / "more.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ran = cli.invoke(app, ["index", str(folder / "more.csv")])
    assert ran.exit_code == 0, ran.output

    assert (
        ids(run(cli, "--text", "levis 501 jeans", "--keywords"))[:4] == ["SKU1"] * 4
    )  # per picture: SKU1 fills
    for mode in ("--keywords", "--hybrid"):
        grouped = ids(run(cli, "--text", "levis 501 jeans", mode, "--per-item", "1"))
        assert grouped[:2] == ["SKU1", "SKU2"] and len(grouped) == len(set(grouped)), (mode, grouped)
        two = ids(run(cli, "--text", "levis 501 jeans", mode, "--per-item", "2", "-k", "1"))
        assert two == ["SKU1", "SKU1"], (mode, two)
        second = ids(
            run(cli, "--text", "levis 501 jeans", mode, "--per-item", "1", "-k", "1", "--offset", "1")
        )
        assert second == ["SKU2"], (mode, second)
    refused = cli.invoke(app, ["search", "--text", "levis", "--keywords", "--like", "item:SKU2"])
    assert refused.exit_code == 2 and "--keywords ranks by words alone" in refused.output
