"""category and tags: read from catalog columns, stored, shown (show, --json, the API), filterable
(search --category / --tag, the API's categories / tags, the search page's filters) and mirrored by
index --sync. The CLI runs in-process with the fake embedder, the API through TestClient."""

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
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder, make_image

ROWS = [  # image, item_id, category, tags
    ("a.jpg", "SKU1", "shoes", "red|sale"),
    ("b.jpg", "SKU2", "shoes", "blue"),
    ("c.jpg", "SKU3", "bags", " red | red |leather "),  # spaces and a repeat: two tags
    ("d.jpg", "SKU4", "", ""),
]


def write_catalog(folder: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,item_id,name,category,tags,source,created_at"]
    for i, (image, item_id, category, tags) in enumerate(rows):
        if not (folder / image).exists():
            make_image(i).save(folder / image)
        lines.append(f'{image},{item_id},name {item_id},{category},"{tags}",shop,2024-01-0{i + 1}')
    catalog = folder / "catalog.csv"
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return catalog


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    embedder = FakeEmbedder()

    def context_for(db: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any) -> Any:
        settings = load_settings(db=db or str(tmp_path / "cat.db"), collection=collection, workers=2, **extra)
        return Context(settings, embedder=embedder)

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    return CliRunner()


def search(cli: CliRunner, *filters: str) -> list[str]:
    ran = cli.invoke(app, ["search", "--text", "shoe", "-k", "10", "--json", *filters])
    assert ran.exit_code == 0, ran.output
    return sorted(hit["item_id"] for hit in json.loads(ran.stdout)["hits"])


def test_category_and_tags_from_the_catalog_are_stored_shown_filtered_and_synced(
    cli: CliRunner, tmp_path: Path
) -> None:
    catalog = write_catalog(tmp_path / "cat", ROWS)
    ran = cli.invoke(app, ["index", str(catalog), "--sync"])
    assert ran.exit_code == 0, ran.output

    shown = cli.invoke(app, ["show", "--item-id", "SKU3", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [(f["category"], f["tags"]) for f in json.loads(shown.stdout)] == [("bags", ["red", "leather"])]
    table = cli.invoke(app, ["show", "--item-id", "SKU1"])
    assert "shoes" in table.stdout and "red|sale" in table.stdout

    assert search(cli) == ["SKU1", "SKU2", "SKU3", "SKU4"]
    assert search(cli, "--category", "shoes") == ["SKU1", "SKU2"]
    assert search(cli, "--category", "shoes", "--category", "bags") == ["SKU1", "SKU2", "SKU3"]
    assert search(cli, "--tag", "red") == ["SKU1", "SKU3"]
    assert search(cli, "--tag", "blue", "--tag", "leather") == ["SKU2", "SKU3"]
    assert search(cli, "--category", "shoes", "--tag", "red") == ["SKU1"]
    assert search(cli, "--category", "hats") == []
    hit = json.loads(cli.invoke(app, ["search", "--text", "x", "-k", "10", "--json", "--tag", "sale"]).stdout)
    assert [(h["category"], h["tags"]) for h in hit["hits"]] == [("shoes", ["red", "sale"])]
    empty = cli.invoke(app, ["search", "--text", "shoe", "--tag", " "])
    assert empty.exit_code != 0 and "--tag must not be empty" in empty.output

    # The catalog changes: SKU1 leaves the sale and becomes a bag, SKU4 gets a category.
    changed = [("a.jpg", "SKU1", "bags", "red"), ROWS[1], ROWS[2], ("d.jpg", "SKU4", "hats", "new")]
    write_catalog(tmp_path / "cat", changed)
    ran = cli.invoke(app, ["index", str(catalog), "--sync", "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["updated"] == 2
    assert search(cli, "--tag", "sale") == []
    assert search(cli, "--category", "bags") == ["SKU1", "SKU3"]
    assert search(cli, "--category", "hats", "--tag", "new") == ["SKU4"]


def test_the_api_takes_categories_and_tags_as_json_and_as_form_fields(tmp_path: Path) -> None:
    from lookalike.usecases import ingest

    catalog = write_catalog(tmp_path / "cat", ROWS)
    service = Context(load_settings(db=str(tmp_path / "api.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(service, str(catalog))
    with TestClient(create_app(service)) as api:
        found = api.post("/search", json={"text": "shoe", "k": 10, "categories": ["shoes"], "tags": ["red"]})
        assert found.status_code == 200, found.text
        assert [(h["item_id"], h["category"], h["tags"]) for h in found.json()["hits"]] == [
            ("SKU1", "shoes", ["red", "sale"])
        ]
        image = (tmp_path / "cat" / "c.jpg").read_bytes()
        form = api.post(
            "/search",
            data={"k": "10", "tags": ["leather", "blue"]},
            files={"image": ("q.jpg", image, "image/jpeg")},
        )
        assert form.status_code == 200, form.text
        assert sorted(h["item_id"] for h in form.json()["hits"]) == ["SKU2", "SKU3"]
        item = api.get(f"/items/{found.json()['hits'][0]['id']}").json()
        assert (item["category"], item["tags"]) == ("shoes", ["red", "sale"])
        for bad in ({"categories": [""]}, {"tags": ["a\nb"]}, {"tags": "red"}, {"categories": [1]}):
            answer = api.post("/search", json={"text": "shoe", **bad})
            assert answer.status_code == 422, (bad, answer.text)
