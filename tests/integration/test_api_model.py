"""A server runs the collection's model or none: another checkpoint neither starts on a collection nor
stores its vectors in one (409), and nothing of it is stored.

The tiny real model, two checkpoints of the same architecture (two random state dicts).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.errors import ModelMismatchError
from lookalike.usecases import Context, ingest
from tests.helpers import build_tiny_model, write_images


def _context(tmp_path: Path, config: Path, checkpoint: Path) -> Context:
    settings = load_settings(
        db=str(tmp_path / "model.db"),
        model=str(config),
        pretrained=str(checkpoint),
        runtime="torch",
        index_roots=str(tmp_path / "roots"),
        workers=2,
    )
    return Context(settings)


@pytest.fixture()
def checkpoints(tmp_path: Path, tiny_model: tuple[Path, Path]) -> tuple[Path, Path, Path]:
    """(config, checkpoint A, checkpoint B): the same architecture, other weights."""
    config, first = tiny_model
    _, second = build_tiny_model(tmp_path / "other", seed=7)
    return config, first, second


def test_a_server_of_another_checkpoint_does_not_start_on_the_collection(
    tmp_path: Path, checkpoints: tuple[Path, Path, Path]
) -> None:
    config, first, second = checkpoints
    made = _context(tmp_path, config, first)
    ingest.index(made, str(write_images(tmp_path / "photos", 3)[0].parent))
    made.close()
    server = _context(tmp_path, config, second)
    with (
        pytest.raises(ModelMismatchError, match="was indexed with") as refused,
        TestClient(create_app(server)),
    ):
        pass
    server.close()  # what `lookalike serve` does when its server cannot start
    assert str(first) in str(refused.value) and str(second) in str(refused.value)


def test_a_server_of_another_checkpoint_refuses_to_index_or_search_a_collection_made_since(
    tmp_path: Path, checkpoints: tuple[Path, Path, Path]
) -> None:
    config, first, second = checkpoints
    write_images(tmp_path / "roots" / "photos", 3)
    server = _context(tmp_path, config, second)  # starts before the collection exists
    with TestClient(create_app(server)) as api:
        # Meanwhile the collection is made with checkpoint A (here in-process, through the same store).
        other = _context(tmp_path, config, first)
        ingest.index(other, str(tmp_path / "roots" / "photos"), source="a")
        assert other.store is server.store
        indexed = api.post("/index", json={"inputs": [str(tmp_path / "roots" / "photos")], "source": "b"})
        assert indexed.status_code == 409, indexed.text
        assert str(first) in indexed.json()["detail"] and str(second) in indexed.json()["detail"]
        uploaded = api.post("/index", files=[("files", ("x.jpg", b"not read", "image/jpeg"))])
        assert uploaded.status_code == 409, uploaded.text
        searched = api.post("/search", json={"text": "red dress"})
        assert searched.status_code == 409 and "was indexed with" in searched.json()["detail"]
        assert api.post("/search", json={"id": 1}).status_code == 404  # a stored id needs no model
        assert api.get("/stats").json()["rows"] == 3  # nothing embedded by B was stored
        other.close()
