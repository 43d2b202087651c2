"""A new item field is a row of the field table: the proof, by adding one.

A copy of the package gets a ``brand`` field: one row in ``store/fields.py`` (with its filter and a
new schema version) and its attribute on ``Item`` (``store/models.py``), and nothing else. A
database indexed by today's code (schema version 3) is then opened by the copy in a fresh process,
which must upgrade it, read ``brand`` from a catalog column, store and show it, update it by
``index --sync``, and filter by it from the command line (``--brand``, in ``--help`` too), the API
(``brands``, JSON and form) and both stores' filter interpreters (the Milvus expression, the read
index's mask).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from lookalike.cli import app
from tests.integration.test_category_tags import write_catalog

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "lookalike"

ROW = """    Field(
        "brand",
        Kind.TEXT,
        Role.KEY,
        128,
        since=4,
        catalog=True,
        filter=Filter("brand", "brands", "of this brand"),
    ),
)
\"\"\"Every scalar field"""

ATTRIBUTE = """    tags: tuple[str, ...] = field(default=(), kw_only=True)
    brand: str = field(default="", kw_only=True)
"""


def add_brand(package: Path) -> list[str]:
    """Add the field to a copy of the package; the files it changed."""
    fields = package / "store" / "fields.py"
    text = fields.read_text()
    assert text.count('\n)\n"""Every scalar field') == 1
    text = text.replace('\n)\n"""Every scalar field', "\n" + ROW, 1)
    assert text.count('VERSIONS = {2: "detected crops", 3: "catalog fields"}') == 1
    text = text.replace('3: "catalog fields"}', '3: "catalog fields", 4: "brands"}')
    fields.write_text(text)
    models = package / "store" / "models.py"
    text = models.read_text()
    assert text.count("    tags: tuple[str, ...] = field(default=(), kw_only=True)\n") == 1
    models.write_text(
        text.replace("    tags: tuple[str, ...] = field(default=(), kw_only=True)\n", ATTRIBUTE)
    )
    return ["store/fields.py", "store/models.py"]


SCRIPT = r"""
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import lookalike
from lookalike.api import create_app
from lookalike.cli import app
from lookalike.config import load_settings
from lookalike.store.fields import SCHEMA_VERSION
from lookalike.store.filters import expression
from lookalike.store.window import Window
from lookalike.usecases import Context
from tests.helpers import FakeEmbedder

assert lookalike.__file__.startswith(sys.argv[3]), lookalike.__file__  # the copy, not the checkout
db, catalog = sys.argv[1], sys.argv[2]
embedder = FakeEmbedder()
import lookalike.cli.common as common
common.context_for = lambda db_, collection, model, pretrained, **extra: Context(
    load_settings(db=db, collection=collection, workers=2, **extra), embedder=embedder)
cli = CliRunner()
report = {"schema": SCHEMA_VERSION, "expression": expression(Window.of(brands=["acme", 'a"b'])),
          "help": cli.invoke(app, ["search", "--help"], terminal_width=200).stdout}

def search(*filters):
    ran = cli.invoke(app, ["search", "--text", "shoe", "-k", "10", "--json", *filters])
    assert ran.exit_code == 0, ran.output
    return sorted(hit["item_id"] for hit in json.loads(ran.stdout)["hits"])

report["before_sync"] = search()  # the upgrade happens on this first open
ran = cli.invoke(app, ["index", catalog, "--sync", "--json"])
assert ran.exit_code == 0, ran.output
report["sync"] = json.loads(ran.stdout)
report["acme"] = search("--brand", "acme")
report["acme_or_zeta"] = search("--brand", "acme", "--brand", "zeta")
report["acme_shoes"] = search("--brand", "acme", "--category", "shoes")
report["nobody"] = search("--brand", "nobody")
bad = cli.invoke(app, ["search", "--text", "x", "--brand", " "])
report["empty_brand"] = [bad.exit_code, bad.output]
shown = cli.invoke(app, ["show", "--item-id", "SKU3", "--json"])
report["shown"] = [f["brand"] for f in json.loads(shown.stdout)]
service = Context(load_settings(db=db, workers=2), embedder=embedder)
with TestClient(create_app(service)) as api:
    found = api.post("/search", json={"text": "shoe", "k": 10, "brands": ["zeta"]})
    report["api"] = [found.status_code, sorted((h["item_id"], h["brand"]) for h in found.json()["hits"])]
    image = (Path(catalog).parent / "b.jpg").read_bytes()
    form = api.post("/search", data={"k": "10", "brands": ["acme"]}, files={"image": ("q.jpg", image, "image/jpeg")})
    report["form"] = [form.status_code, sorted(h["item_id"] for h in form.json().get("hits", []))]
    report["api_bad"] = api.post("/search", json={"text": "shoe", "brands": ["a\nb"]}).status_code
    facets = api.get("/facets").json()["fields"]
    report["facets"] = [[f["param"], [[v["value"], v["count"]] for v in f["values"]]] for f in facets if f["name"] == "brand"]
print(json.dumps(report))
"""


def test_a_new_field_needs_only_its_table_row_and_its_attribute(tmp_path: Path) -> None:
    # Today's code indexes a catalog: a collection of schema version 3.
    catalog = write_catalog(
        tmp_path / "cat",
        [("a.jpg", "SKU1", "shoes", "red"), ("b.jpg", "SKU2", "shoes", ""), ("c.jpg", "SKU3", "bags", "")],
    )
    db = tmp_path / "brand.db"
    from lookalike.config import load_settings
    from lookalike.usecases import Context, ingest
    from tests.helpers import FakeEmbedder

    today = Context(load_settings(db=str(db), workers=2), embedder=FakeEmbedder())
    ingest.index(today, str(catalog))
    today.close()

    # The catalog gains a brand column; the package gains the field.
    lines = catalog.read_text().splitlines()
    brands = ["acme", "zeta", "acme"]
    catalog.write_text(
        "\n".join([lines[0] + ",brand", *(f"{line},{b}" for line, b in zip(lines[1:], brands, strict=True))])
        + "\n"
    )
    copy = tmp_path / "src" / "lookalike"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    changed = add_brand(copy)
    differing = sorted(
        str(path.relative_to(copy))
        for path in copy.rglob("*.py")
        if path.read_bytes() != (PACKAGE / path.relative_to(copy)).read_bytes()
    )
    assert differing == changed

    env = {**os.environ, "PYTHONPATH": f"{copy.parent}{os.pathsep}{ROOT}"}
    ran = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db), str(catalog), str(copy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    import json

    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["schema"] == 4
    assert report["expression"] == 'brand in ["acme", "a\\"b"]'
    assert "--brand" in report["help"] and "Only items of this brand" in report["help"]
    assert report["before_sync"] == ["SKU1", "SKU2", "SKU3"]  # the upgrade kept every item
    assert report["sync"]["updated"] == 3 and report["sync"]["deleted"] == 0
    assert report["acme"] == ["SKU1", "SKU3"]
    assert report["acme_or_zeta"] == ["SKU1", "SKU2", "SKU3"]
    assert report["acme_shoes"] == ["SKU1"]
    assert report["nobody"] == []
    assert report["empty_brand"][0] == 2 and "--brand must not be empty" in report["empty_brand"][1]
    assert report["shown"] == ["acme"]
    assert report["api"] == [200, [["SKU2", "zeta"]]]
    assert report["form"] == [200, ["SKU1", "SKU3"]]
    assert report["api_bad"] == 422
    assert report["facets"] == [["brands", [["acme", 2], ["zeta", 1]]]]  # the search page's picker too

    # Today's package is untouched and has no such option.
    assert "--brand" not in CliRunner().invoke(app, ["search", "--help"], terminal_width=200).stdout
