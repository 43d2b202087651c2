"""A tower loaded alone from its export gives the full load's vectors, and is not used where it cannot be
vouched for: another machine or library version, a changed file, a damaged manifest, a check vector
it no longer gives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lookalike.embed import exported
from lookalike.embed.openclip import OpenClipEmbedder
from lookalike.ingest import decode_image
from tests.helpers import write_images

TEXTS = ["red floral dress", "萨摩耶", "a long description of a blue striped summer dress with two pockets"]


def _embedder(
    tiny_model: tuple[Path, Path], cache: Path, runtime: str = "onnx-int8-static"
) -> OpenClipEmbedder:
    config, checkpoint = tiny_model
    return OpenClipEmbedder(str(config), str(checkpoint), runtime=runtime, cache_dir=cache)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("tower-images")
    sizes = [(160, 120), (90, 200), (64, 64), (33, 47)]  # landscape, portrait, the input size, smaller
    paths = write_images(folder, len(sizes))
    pictures = [decode_image(p.read_bytes()).image for p in paths]
    return [picture.resize(size) for picture, size in zip(pictures, sizes, strict=True)]


def _full(tiny_model: tuple[Path, Path], cache: Path, runtime: str = "onnx-int8-static") -> OpenClipEmbedder:
    full = _embedder(tiny_model, cache, runtime)
    full.load()  # the whole model: writes the manifest
    return full


def _manifest(cache: Path) -> Path:
    (path,) = (cache / "towers").glob("*.json")
    return path


@pytest.mark.parametrize("runtime", ["onnx-int8-static", "openvino"])
def test_each_tower_loaded_alone_gives_the_full_loads_vectors(
    tiny_model: tuple[Path, Path], tmp_path: Path, images: list, runtime: str
) -> None:
    full = _full(tiny_model, tmp_path, runtime)
    texts = _embedder(tiny_model, tmp_path, runtime)
    pictures = _embedder(tiny_model, tmp_path, runtime)
    text_cos = np.sum(full.embed_texts(TEXTS) * texts.embed_texts(TEXTS), axis=1)
    image_cos = np.sum(full.embed_images(images) * pictures.embed_images(images), axis=1)
    assert text_cos.min() >= 0.9999 and image_cos.min() >= 0.9999
    # Neither built the PyTorch model, and each loaded only its own tower.
    assert not texts._loaded and not pictures._loaded
    assert texts._encode_image is None and pictures._encode_text is None
    assert pictures.logit_scale == pytest.approx(full.logit_scale)


def test_prepared_images_of_a_tower_loaded_alone_match_the_full_load(
    tiny_model: tuple[Path, Path], tmp_path: Path, images: list
) -> None:
    full = _full(tiny_model, tmp_path)
    alone = _embedder(tiny_model, tmp_path)
    prepared = [alone.prepare_image(image) for image in images]  # as ingest's workers do
    expected = [full.prepare_image(image) for image in images]
    assert not alone._loaded
    for mine, theirs in zip(prepared, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)
    assert np.sum(full.embed_prepared(expected) * alone.embed_prepared(prepared), axis=1).min() >= 0.9999


def _loads_whole_model(tiny_model: tuple[Path, Path], cache: Path) -> bool:
    embedder = _embedder(tiny_model, cache)
    embedder.embed_texts(TEXTS[:1])
    return embedder._loaded


def test_a_changed_export_file_sends_the_process_to_the_full_load(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    _full(tiny_model, tmp_path)
    assert not _loads_whole_model(tiny_model, tmp_path)
    tower = Path(json.loads(_manifest(tmp_path).read_text())["text"]["path"])
    before = tower.stat()
    # The same bytes written again, its modification time set back: the change time still tells.
    tower.write_bytes(tower.read_bytes())
    os.utime(tower, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _loads_whole_model(tiny_model, tmp_path)
    assert not _loads_whole_model(tiny_model, tmp_path)  # the full load wrote the manifest again


def test_a_tower_that_no_longer_gives_its_check_vector_is_not_used(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    _full(tiny_model, tmp_path)
    path = _manifest(tmp_path)
    manifest = json.loads(path.read_text())
    manifest["text_check"] = list(-np.asarray(manifest["text_check"]))  # as if the tower computed otherwise
    path.write_text(json.dumps(manifest))
    assert _loads_whole_model(tiny_model, tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "older version", "torch label", "a folder"])
def test_a_damaged_manifest_sends_the_process_to_the_full_load(
    tiny_model: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    _full(tiny_model, tmp_path)
    path = _manifest(tmp_path)
    text = path.read_text()
    manifest = json.loads(text)
    if damage == "garbage":
        path.write_bytes(b"\xff\xfe not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "older version":
        path.write_text(json.dumps({**manifest, "version": 1}))
    elif damage == "torch label":
        manifest["text"]["runtime"] = "torch-fp32"
        path.write_text(json.dumps(manifest))
    else:
        path.unlink()
        path.mkdir()
    assert _loads_whole_model(tiny_model, tmp_path)


def test_another_machine_library_version_or_checkpoint_does_not_use_the_manifest(
    tiny_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _full(tiny_model, tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(exported, "machine", lambda: "another-cpu")
        assert _loads_whole_model(tiny_model, tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(exported, "_versions", lambda: ("onnxruntime 0.0.1",))
        assert _loads_whole_model(tiny_model, tmp_path)
    assert not _loads_whole_model(tiny_model, tmp_path)
    # Another runtime or device asked for is another identity.
    config, checkpoint = tiny_model
    other = OpenClipEmbedder(str(config), str(checkpoint), runtime="onnx", cache_dir=tmp_path)
    assert other._exported() is None
    other = OpenClipEmbedder(
        str(config), str(checkpoint), "cpu", runtime="onnx-int8-static", cache_dir=tmp_path
    )
    assert other._exported() is None


def test_a_checkpoint_rewritten_in_place_is_another_model(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    config, checkpoint = tiny_model
    mine = tmp_path / "weights.pt"
    mine.write_bytes(checkpoint.read_bytes())
    full = OpenClipEmbedder(str(config), str(mine), runtime="onnx-int8-static", cache_dir=tmp_path)
    full.load()
    state = torch.load(mine)
    state["logit_scale"] = state["logit_scale"] + 1.0
    torch.save(state, mine)
    again = OpenClipEmbedder(str(config), str(mine), runtime="onnx-int8-static", cache_dir=tmp_path)
    assert again._exported() is None


def test_the_torch_runtime_writes_no_manifest(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    _full(tiny_model, tmp_path, "torch")
    assert not list(tmp_path.glob("towers/*.json"))
    embedder = _embedder(tiny_model, tmp_path, "torch")
    embedder.embed_texts(TEXTS[:1])
    assert embedder._loaded


def test_a_process_started_before_the_probe_moves_to_the_chosen_runtimes_once_it_is_done(
    tiny_model: tuple[Path, Path], tmp_path: Path, images: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.embed import background, openclip, runtimes

    monkeypatch.setattr(runtimes, "auto_candidates", lambda: [runtimes.RuntimeName.ONNX_INT8_STATIC])
    started: list[background.Job] = []
    monkeypatch.setattr(background, "start", lambda job, key, label: started.append(job) or 1234)
    config, checkpoint = tiny_model
    first = OpenClipEmbedder(str(config), str(checkpoint), cache_dir=tmp_path, probe="background")
    before = first.embed_images(images)
    assert first.runtime == "torch-fp32" and len(started) == 1  # the probe went to the background
    # The background worker does what a process with probe="now" does.
    worker = OpenClipEmbedder(str(config), str(checkpoint), cache_dir=tmp_path, probe="now")
    worker.load()
    assert worker.runtime == "onnx-int8-static"
    monkeypatch.setattr(openclip, "SWITCH_CHECK_S", 0.0)
    first._switch_due = 0.0  # as if ten seconds had passed
    after = first.embed_images(images)
    assert first._switch_due is None and first._encode_image is not first._runtime.images
    np.testing.assert_allclose(after, worker.embed_images(images), atol=1e-5)
    assert np.sum(before * after, axis=1).min() >= 0.99  # torch fp32 then static int8: the probe's bar
    texts = first.embed_texts(TEXTS)
    assert np.sum(texts * worker.embed_texts(TEXTS), axis=1).min() >= 0.9999
