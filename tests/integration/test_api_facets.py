"""GET /facets: each filter field's known values with counts (the search page's pickers), whether the
collection holds names, and which optional search fields the server's API has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic.fields import FieldInfo

from lookalike.api import create_app
from lookalike.api.facets import OPTIONAL_FEATURES
from lookalike.api.schemas import SearchRequest
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder
from tests.integration.test_category_tags import ROWS, write_catalog


def values(body: dict[str, Any], name: str) -> list[tuple[str, int]]:
    (field,) = [f for f in body["fields"] if f["name"] == name]
    return [(v["value"], v["count"]) for v in field["values"]]


@pytest.fixture()
def service(tmp_path: Path) -> Context:
    ctx = Context(load_settings(db=str(tmp_path / "facets.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(ctx, str(write_catalog(tmp_path / "cat", ROWS)))
    return ctx


def test_facets_list_each_filter_fields_values_by_count(service: Context) -> None:
    with TestClient(create_app(service)) as api:
        response = api.get("/facets")
        assert response.status_code == 200, response.text
        body = response.json()
    assert [(f["name"], f["param"]) for f in body["fields"]] == [
        ("source", "sources"),
        ("category", "categories"),
        ("tags", "tags"),
    ]
    assert values(body, "source") == [("shop", 4)]
    assert values(body, "category") == [("shoes", 2), ("bags", 1)]  # SKU4's empty category is no value
    assert values(body, "tags") == [("red", 2), ("blue", 1), ("leather", 1), ("sale", 1)]
    assert not any(f["truncated"] for f in body["fields"])
    assert body["has_names"] is True


def test_facets_follow_deletes_at_once_and_say_when_values_were_left_out(service: Context) -> None:
    with TestClient(create_app(service)) as api:
        assert values(api.get("/facets").json(), "category") == [("shoes", 2), ("bags", 1)]
        (bag,) = api.get("/items", params={"item_id": "SKU3"}).json()
        assert api.delete(f"/items/{bag['id']}").status_code == 200
        body = api.get("/facets").json()
        assert values(body, "category") == [("shoes", 2)]
        assert values(body, "tags") == [("blue", 1), ("red", 1), ("sale", 1)]

        top = api.get("/facets", params={"limit": 1}).json()
        assert values(top, "tags") == [("blue", 1)] and [f["truncated"] for f in top["fields"]] == [
            False,
            False,
            True,
        ]
        assert api.get("/facets", params={"limit": 0}).status_code == 422


def test_facets_of_a_collection_not_made_yet_are_empty(tmp_path: Path) -> None:
    ctx = Context(load_settings(db=str(tmp_path / "empty.db"), workers=2), embedder=FakeEmbedder())
    with TestClient(create_app(ctx)) as api:
        body = api.get("/facets").json()
    assert [f["values"] for f in body["fields"]] == [[], [], []] and body["has_names"] is False


def test_a_collection_without_names_says_so(tmp_path: Path) -> None:
    from tests.helpers import write_images

    ctx = Context(load_settings(db=str(tmp_path / "plain.db"), workers=2), embedder=FakeEmbedder())
    write_images(tmp_path / "photos", 3)
    ingest.index(ctx, str(tmp_path / "photos"), source="avatar")
    with TestClient(create_app(ctx)) as api:
        body = api.get("/facets").json()
    assert body["has_names"] is False
    assert values(body, "source") == [("avatar", 3)] and values(body, "category") == []


def test_features_are_the_optional_search_fields_the_request_model_has(
    service: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(service)) as api:
        before = api.get("/facets").json()["features"]
        assert before == [name for name in OPTIONAL_FEATURES if name in SearchRequest.model_fields]
        assert "per_item" in before
        monkeypatch.delitem(SearchRequest.model_fields, "per_item")
        monkeypatch.setitem(SearchRequest.model_fields, "keywords", FieldInfo(annotation=bool, default=False))
        after = api.get("/facets").json()["features"]
    assert set(before) - set(after) == {"per_item"} and "keywords" in after
