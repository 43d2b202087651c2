"""Every command takes the collection's model from its record: none is asked for again, another is refused.

In-process runs (tests/cli.py) with the tiny real model; `serve` stops where uvicorn would start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli import lookalike
from tests.helpers import build_tiny_model, write_images

pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_MODEL", "LOOKALIKE_PRETRAINED")}
    return env | {
        "LOOKALIKE_DB": str(tmp_path / "model.db"),
        "LOOKALIKE_RUNTIME": "torch",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The apps `lookalike serve` hands to uvicorn (uvicorn itself is not started)."""
    from lookalike.api import server
    from lookalike.store import readindex

    apps: list[Any] = []
    monkeypatch.setattr(server, "run", lambda app, settings, **options: apps.append(app) or True)
    monkeypatch.setattr(readindex, "use_one_blas_thread", lambda: None)  # this process is no server
    return apps


def test_another_checkpoint_is_refused_by_index_search_and_serve(
    tmp_path: Path, tiny_model: tuple[Path, Path], served: list[Any]
) -> None:
    config, checkpoint = tiny_model
    env = _env(tmp_path)
    write_images(tmp_path / "photos", 3)
    made = lookalike(
        env, "index", str(tmp_path / "photos"), "--model", str(config), "--pretrained", str(checkpoint)
    )
    assert made.returncode == 0, made.stderr
    _, other = build_tiny_model(tmp_path / "other", seed=7)  # the same architecture, other weights
    other_flags = ["--model", str(config), "--pretrained", str(other)]
    write_images(tmp_path / "more", 2, start=20)
    for args in (["index", str(tmp_path / "more")], ["search", "--text", "red dress"], ["serve"]):
        refused = lookalike(env, *args, *other_flags)
        assert refused.returncode == 2, (args, refused.stderr)
        assert str(checkpoint) in refused.stderr and str(other) in refused.stderr  # both are named
    assert served == []  # the server never started
    stats = json.loads(lookalike(env, "stats", "--json").stdout)
    assert stats["rows"] == 3  # nothing of the other model was stored


def test_serve_and_classify_use_a_random_weights_collection_without_the_flag(
    tmp_path: Path, tiny_model: tuple[Path, Path], served: list[Any]
) -> None:
    config, _ = tiny_model
    env = _env(tmp_path)
    photos = write_images(tmp_path / "photos", 3)
    made = lookalike(env, "index", str(tmp_path / "photos"), "--model", str(config), "--pretrained", "random")
    assert made.returncode == 0, made.stderr
    labels = tmp_path / "labels.toml"
    labels.write_text('[labels.dog]\nprompts = ["a dog"]\n[labels.dress]\nprompts = ["a dress"]\n')

    classified = lookalike(env, "classify", str(photos[0]), "--labels", str(labels), "--json")
    assert classified.returncode == 0, classified.stderr
    assert {row["label"] for row in json.loads(classified.stdout)[0]["labels"]} == {"dog", "dress"}

    started = lookalike(env, "serve")
    assert started.returncode == 0, started.stderr
    (app,) = served
    settings = app.state.context.settings
    assert settings.pretrained == "random" and settings.model == str(Path(config).resolve())
