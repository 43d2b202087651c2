"""One hit per product (search --per-item, the API's per_item) and examples as queries (--like / --unlike,
the API's like / unlike): the CLI in-process with the fake embedder, the API through TestClient, and the
Rocchio query on constructed vectors through the real Lite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.examples import BETA, Example, ExampleKind
from lookalike.queries import Query
from lookalike.store import Item
from lookalike.usecases import Context, ingest
from lookalike.usecases import search as searching
from tests.helpers import FakeEmbedder, make_image

# Three products with 3, 2 and 1 pictures, and three products of one picture each.
PICTURES = [("SKU1", 3), ("SKU2", 2), ("SKU3", 1), ("SKU4", 1), ("SKU5", 1), ("SKU6", 1)]


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, counting how often its model loads (an example's error must come first)."""

    loads = 0

    def _load(self) -> None:
        CountingEmbedder.loads += 1


def write_catalog(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,item_id,name,source,created_at"]
    seed = 0
    for item_id, count in PICTURES:
        for n in range(count):
            image = f"{item_id.lower()}_{n}.jpg"
            make_image(seed).save(folder / image)
            seed += 1
            lines.append(f"{image},{item_id},name {item_id},shop,2024-01-0{n + 1}")
    catalog = folder / "catalog.csv"
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return catalog


@pytest.fixture()
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    embedder = CountingEmbedder()

    def context_for(db: str | None, collection: str | None, model: Any, pretrained: Any, **extra: Any) -> Any:
        settings = load_settings(db=db or str(tmp_path / "p.db"), collection=collection, workers=2, **extra)
        return Context(settings, embedder=embedder)

    monkeypatch.setattr("lookalike.cli.common.context_for", context_for)
    runner = CliRunner()
    ran = runner.invoke(app, ["index", str(write_catalog(tmp_path / "cat"))])
    assert ran.exit_code == 0, ran.output
    return runner


def hits(cli: CliRunner, *args: str) -> list[dict[str, Any]]:
    ran = cli.invoke(app, ["search", "--json", *args])
    assert ran.exit_code == 0, ran.output
    found: list[dict[str, Any]] = json.loads(ran.stdout)["hits"]
    return found


def expected_products(ranked: list[dict[str, Any]], k: int, per_item: int, offset: int = 0) -> list[int]:
    """What grouping must answer, read off the full per-picture ranking: the products in the order of
    their best picture, each with its up to per_item best pictures."""
    groups: dict[str, list[int]] = {}
    for hit in ranked:
        groups.setdefault(hit["item_id"] or str(hit["id"]), []).append(hit["id"])
    return [i for ids in list(groups.values())[offset : offset + k] for i in ids[:per_item]]


@pytest.mark.parametrize("query", [["--text", "shoe"], ["--image", "cat/sku2_1.jpg"]])
def test_per_item_answers_k_products_each_ranked_by_its_best_picture(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    ranked = hits(cli, *query, "-k", "100")
    assert len(ranked) == 9
    for k, per_item, offset in (
        (2, 1, 0),
        (3, 1, 0),
        (6, 1, 0),
        (10, 1, 0),
        (2, 2, 0),
        (3, 3, 0),
        (2, 1, 1),
        (2, 2, 3),
    ):
        args = [*query, "-k", str(k), "--per-item", str(per_item), "--offset", str(offset)]
        grouped = hits(cli, *args)
        assert [h["id"] for h in grouped] == expected_products(ranked, k, per_item, offset), args
        assert set(grouped[0]) == set(ranked[0])  # each hit is shaped as before: scripts read it alike
    assert len({h["item_id"] for h in hits(cli, *query, "-k", "6", "--per-item", "1")}) == 6
    table = cli.invoke(app, ["search", *query, "-k", "2", "--per-item", "3"])
    assert table.exit_code == 0, table.output
    ranks = [line.split()[0] for line in table.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert sorted(set(ranks)) == ["1", "2"]  # a product's pictures share its rank
    for bad in ("0", "101", "x"):
        refused = cli.invoke(app, ["search", *query, "--per-item", bad])
        assert refused.exit_code == 2 and "--per-item" in refused.output


def test_like_and_unlike_resolve_ids_items_and_files_and_leave_the_examples_out(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    everything = hits(cli, "--text", "shoe", "-k", "100")
    sku1 = [h["id"] for h in everything if h["item_id"] == "SKU1"]
    one = next(h["id"] for h in everything if h["item_id"] == "SKU3")

    by_item = hits(cli, "--like", "item:SKU1", "-k", "100")
    assert len(by_item) == 6 and not {h["id"] for h in by_item} & set(sku1)
    assert [h["id"] for h in hits(cli, "--like", "SKU1", "-k", "100")] == [h["id"] for h in by_item]
    assert [h["id"] for h in hits(cli, "--item-id", "SKU1", "-k", "100")] == [h["id"] for h in by_item]
    by_id = hits(cli, "--like", f"id:{one}", "-k", "3")
    assert [h["id"] for h in by_id] == [h["id"] for h in hits(cli, "--id", str(one), "-k", "3")]
    assert [h["id"] for h in hits(cli, "--like", str(one), "-k", "3")] == [h["id"] for h in by_id]
    # A file is an image: searching like it is searching by it (and the stored copy is a hit).
    by_file = hits(cli, "--like", "cat/sku3_0.jpg", "-k", "3")
    assert [h["id"] for h in by_file] == [h["id"] for h in hits(cli, "--image", "cat/sku3_0.jpg", "-k", "3")]
    # Combined with a text, with grouping, with filters: no example is a hit.
    mixed = hits(cli, "--text", "shoe", "--like", "item:SKU2", "--unlike", f"id:{one}", "--per-item", "1")
    assert len(mixed) == 4 and {h["item_id"] for h in mixed} == {"SKU1", "SKU4", "SKU5", "SKU6"}


def test_bad_examples_are_clear_errors_before_a_model_loads(cli: CliRunner, tmp_path: Path) -> None:
    CountingEmbedder.loads = 0
    for args, message in (
        (["--like", "item:NOPE"], "--like 'item:NOPE': no stored item has the item id 'NOPE'"),
        (["--like", "NOPE"], "--like 'NOPE' names no file and no catalog item"),
        (["--like", "99999999"], "--like '99999999' names no file, no stored id and no catalog item"),
        (["--like", "id:12345", "--text", "x"], "--like 'id:12345': no stored item has the id 12345"),
        (["--like", "id:x"], "id: must be followed by a stored id"),
        (["--like", "ftp://host/a.jpg"], "an image URL must be http(s)"),
        (["--unlike", "item:SKU1"], "Give exactly one of --text, --image, --id or --item-id"),
        (["--like", str(tmp_path)], "names no file"),  # a folder is no image
        (["--like", "item:SKU1"] * 21, "--like can be given at most 20 times, got 21"),
        (["--like", "item:SKU1", "--text", "a", "--id", "1"], "Give exactly one of"),
        (["--like", "id:" + "9" * 5000], "id: must be followed by a stored id"),
        (["--like", "id:²"], "id: must be followed by a stored id"),
        (["--like", "²"], "--like '²' names no file and no catalog item"),
        (["--like", "9" * 30], "names no file and no catalog item"),  # too long for an id
    ):
        ran = cli.invoke(app, ["search", *args])
        assert ran.exit_code == 2, (args, ran.output)
        assert message in " ".join(ran.output.split()), (args, ran.output)
    assert CountingEmbedder.loads == 0


def test_a_bare_value_that_is_both_a_stored_id_and_an_item_id_is_ambiguous(tmp_path: Path) -> None:
    service = Context(load_settings(db=str(tmp_path / "a.db"), workers=2), embedder=FakeEmbedder(dim=16))
    rng = np.random.default_rng(0)
    items = [
        Item(id=i, sha256=f"{i:064x}", item_id=item_id, name="", source="s", created_at=1_704_067_200,
             uri=f"/x/{i}.jpg", width=1, height=1, vector=rng.normal(size=16).astype(np.float32))
        for i, item_id in ((7, "A"), (8, "7"), (9, "B"))
    ]  # fmt: skip
    service.store.create(16)
    service.store.insert(items)
    guess = Example("7", ExampleKind.GUESS, "7")
    with pytest.raises(Exception, match="both a stored id and a catalog item id: write id:7 or item:7"):
        searching.search(service, Query(like=(guess,)))
    found = searching.search(service, Query(like=(Example("id:7", ExampleKind.ID, "7"),), k=5))
    assert {h.item.id for h in found.hits} == {8, 9}


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_an_unliked_look_falls_and_a_liked_looks_neighbours_rise(tmp_path: Path) -> None:
    """Constructed looks through the real Lite store: the query sits between look A and look B, nearer A.
    Unliking one A picture sends every A picture down the list; liking one B picture brings its
    neighbours up; the moved query is the stated formula's."""
    dim = 16
    base = np.eye(dim, dtype=np.float32)
    rng = np.random.default_rng(3)
    look_a, look_b = unit(base[0] + base[2]), unit(base[1] + base[2])
    query_vector = unit(0.55 * base[0] + 0.45 * base[1] + 0.3 * base[2])
    vectors = {1: query_vector}
    for i in range(5):  # A: ids 10-14, B: ids 20-24, noise: ids 30-39
        vectors[10 + i] = unit(look_a + 0.15 * rng.normal(size=dim))
        vectors[20 + i] = unit(look_b + 0.15 * rng.normal(size=dim))
    for i in range(10):
        vectors[30 + i] = unit(rng.normal(size=dim))
    items = [
        Item(id=i, sha256=f"{i:064x}", item_id=f"P{i}", name="", source="s", created_at=1_704_067_200,
             uri=f"/x/{i}.jpg", width=1, height=1, vector=v)
        for i, v in vectors.items()
    ]  # fmt: skip
    service = Context(load_settings(db=str(tmp_path / "r.db"), workers=2), embedder=FakeEmbedder(dim=dim))
    service.store.create(dim)
    service.store.insert(items)

    def ranking(**examples: tuple[Example, ...]) -> list[int]:
        return [h.item.id for h in searching.search(service, Query(id=1, k=30, **examples)).hits]

    def rank(ids: list[int], group: range) -> float:
        return float(np.mean([ids.index(i) for i in group if i in ids]))

    plain = ranking()
    assert rank(plain, range(10, 15)) < rank(plain, range(20, 25))  # A first
    unliked = ranking(unlike=(Example("id:10", ExampleKind.ID, "10"),))
    assert 10 not in unliked
    assert rank(unliked, range(11, 15)) > rank(plain, range(11, 15)) + 2  # look A falls
    assert rank(unliked, range(20, 25)) < rank(plain, range(20, 25))  # and B takes its places
    liked = ranking(like=(Example("id:20", ExampleKind.ID, "20"),))
    assert 20 not in liked and rank(liked, range(21, 25)) < rank(plain, range(21, 25))  # B's neighbours rise
    # The scores are those of the stated query: normalise(mean(query, liked) - BETA * mean(unliked)).
    moved = unit((query_vector + vectors[20]) / 2 - BETA * vectors[10])
    both = searching.search(
        service,
        Query(
            id=1,
            k=3,
            like=(Example("id:20", ExampleKind.ID, "20"),),
            unlike=(Example("id:10", ExampleKind.ID, "10"),),
        ),
    )
    for hit in both.hits:
        assert hit.score == pytest.approx(float(vectors[hit.item.id] @ moved), abs=1e-5)


def test_the_api_groups_and_takes_examples_and_refuses_bad_ones_with_422(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "cat")
    service = Context(load_settings(db=str(tmp_path / "api.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(service, str(catalog))
    with TestClient(create_app(service)) as api:
        ranked = api.post("/search", json={"text": "shoe", "k": 100}).json()["hits"]
        grouped = api.post("/search", json={"text": "shoe", "k": 3, "per_item": 2})
        assert grouped.status_code == 200, grouped.text
        assert [h["id"] for h in grouped.json()["hits"]] == expected_products(ranked, 3, 2)
        sku2 = next(h["id"] for h in ranked if h["item_id"] == "SKU2")
        liked = api.post("/search", json={"like": ["item:SKU1"], "unlike": [f"id:{sku2}"], "k": 100})
        assert liked.status_code == 200, liked.text
        assert {h["item_id"] for h in liked.json()["hits"]} == {"SKU2", "SKU3", "SKU4", "SKU5", "SKU6"}
        assert len(liked.json()["hits"]) == 5  # SKU1's three pictures and the unliked one are no hits
        image = (tmp_path / "cat" / "sku3_0.jpg").read_bytes()
        form = api.post(
            "/search",
            data={"k": "10", "per_item": "1", "like": ["item:SKU1", "item:SKU2"]},
            files={"image": ("q.jpg", image, "image/jpeg")},
        )
        assert form.status_code == 200, form.text
        assert [h["item_id"] for h in form.json()["hits"]][:1] != ["SKU1"]
        assert {h["item_id"] for h in form.json()["hits"]} == {"SKU3", "SKU4", "SKU5", "SKU6"}
        for bad in (
            {"like": ["SKU1"]},  # the API takes explicit examples only
            {"like": ["id:abc"]},
            {"like": [""]},
            {"like": ["file:///etc/passwd"]},
            {"like": "item:SKU1"},
            {"like": ["item:SKU1"] * 21},
            {"text": "x", "unlike": ["item:SKU1"] * 21},
            {"unlike": ["item:SKU1"]},  # unlike alone searches for nothing
            {"text": "x", "per_item": 0},
            {"text": "x", "per_item": 101},
            {"text": "x", "per_item": "many"},
            {"like": ["item:NOPE"]},
            {"text": "x", "like": ["id:4242"]},
            {"like": ["id:" + "9" * 4000]},
            {"like": [None]},
            {"like": [1]},
            {"like": {"id": 1}},
            {"like": []},
            {"unlike": None},
            {"text": "x", "per_item": 10**30},
            {"text": "x", "per_item": 1.5},
        ):
            answer = api.post("/search", json=bad)
            assert answer.status_code == 422, (bad, answer.text)
        unknown = api.post("/search", json={"like": ["item:NOPE"]}).json()["detail"]
        assert "like 'item:NOPE'" in str(unknown)
        refused = api.post("/search", json={"like": ["http://127.0.0.1:9/a.jpg"]})
        assert refused.status_code == 422 and "non-public address" in refused.text  # never fetched


def test_grouping_keeps_the_window(cli: CliRunner, tmp_path: Path) -> None:
    found = hits(cli, "--text", "shoe", "-k", "10", "--per-item", "2", "--until", "2024-01-01")
    assert [h["item_id"] for h in found].count("SKU1") == 1  # only its first picture is that old
    assert len({h["item_id"] for h in found}) == 6


def test_an_example_url_is_fetched_under_the_api_policy_like_image_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.hostile import FakeNet, hostile_server

    catalog = write_catalog(tmp_path / "cat")
    service = Context(load_settings(db=str(tmp_path / "u.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(service, str(catalog))
    with hostile_server() as server, TestClient(create_app(service)) as api:
        net = FakeNet(server)
        net.install(monkeypatch)
        url = f"http://public.example:{server.port}/img.jpg"
        by_url = api.post("/search", json={"image_url": url, "k": 4})
        liked = api.post("/search", json={"like": [url], "k": 4})
        assert liked.status_code == 200, liked.text
        assert [h["id"] for h in liked.json()["hits"]] == [h["id"] for h in by_url.json()["hits"]]
        for inward in (
            f"http://public.example:{server.port}/to-loopback",
            f"http://localhost:{server.port}/secret",
        ):
            refused = api.post("/search", json={"text": "x", "unlike": [inward]})
            assert refused.status_code in (403, 422), refused.text
        assert "/secret" not in server.hits


def test_through_a_running_server_the_cli_sends_per_item_and_examples_as_the_api_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remote client (what `search` uses while `lookalike serve` holds the database), on the app."""
    from lookalike.errors import ConfigError, ExampleError
    from lookalike.examples import parse_examples
    from lookalike.remote.client import Client

    catalog = write_catalog(tmp_path / "cat")
    service = Context(load_settings(db=str(tmp_path / "r.db"), workers=2), embedder=FakeEmbedder())
    ingest.index(service, str(catalog))
    one = searching.search(service, Query(text="shoe", k=1)).hits[0].item.id
    monkeypatch.chdir(tmp_path)
    with TestClient(create_app(service)) as api:
        client = Client("http://testserver")
        client._http = api
        for like, unlike, per_item in (([str(one)], ["SKU2"], None), (["item:SKU1"], [f"id:{one}"], 1)):
            query = Query(
                text="shoe",
                k=4,
                per_item=per_item,
                like=parse_examples(like, "--like", paths=True),
                unlike=parse_examples(unlike, "--unlike", paths=True),
            )
            local = [h.item.id for h in searching.search(service, query).hits]
            assert [h.item.id for h in client.search(query).hits] == local
        with pytest.raises(ExampleError, match="'item:NOPE'"):
            client.search(Query(like=parse_examples(["NOPE"], "--like", paths=True)))
        with pytest.raises(ConfigError, match="takes example images by http\\(s\\) URL only"):
            client.search(Query(text="x", like=parse_examples(["cat/sku1_0.jpg"], "--like", paths=True)))
