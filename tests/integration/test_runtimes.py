"""ONNX Runtime exports of the tiny model agree with PyTorch, are cached, and trim text exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lookalike.embed import export, probe, runtimes
from lookalike.embed.openclip import OpenClipEmbedder
from lookalike.errors import ConfigError, ModelUnavailableError
from lookalike.ingest import decode_image
from tests.helpers import write_images

TEXTS = ["red floral dress", "萨摩耶", "a long description of a blue striped summer dress with two pockets"]


def _embedder(tiny_model: tuple[Path, Path], runtime: str, cache: Path) -> OpenClipEmbedder:
    config, checkpoint = tiny_model
    return OpenClipEmbedder(str(config), str(checkpoint), runtime=runtime, cache_dir=cache)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("runtime-images")
    return [decode_image(p.read_bytes()).image for p in write_images(folder, 6)]


@pytest.mark.parametrize(
    ("runtime", "label", "bar"),
    [
        ("onnx", "onnx-fp32", 0.999),
        ("onnx-int8", "onnx-int8", 0.99),
        ("onnx-int8-static", "onnx-int8-static", 0.99),
        ("torch-bf16", "torch-bf16", 0.99),
        ("openvino", "openvino", 0.99),
        ("openvino-int8", "openvino-int8", 0.99),
    ],
)
def test_onnx_runtimes_agree_with_torch(
    tiny_model: tuple[Path, Path], tmp_path: Path, images: list, runtime: str, label: str, bar: float
) -> None:
    reference = _embedder(tiny_model, "torch", tmp_path)
    candidate = _embedder(tiny_model, runtime, tmp_path)
    assert candidate.runtime == label and reference.runtime == "torch-fp32"
    image_cos = np.sum(reference.embed_images(images) * candidate.embed_images(images), axis=1)
    text_cos = np.sum(reference.embed_texts(TEXTS) * candidate.embed_texts(TEXTS), axis=1)
    assert image_cos.min() >= bar and text_cos.min() >= bar


def test_auto_picks_an_onnx_runtime_on_a_cpu_and_reuses_the_export(
    tiny_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _embedder(tiny_model, "auto", tmp_path)
    first.load()
    exports = list((tmp_path / "onnx").iterdir())
    assert len(exports) == 1
    (probes_file,) = exports[0].glob("probes-*.json")  # one per machine
    probes = json.loads(probes_file.read_text())
    assert {"torch", "onnx", "onnx-int8", "onnx-int8-static"} <= set(probes)
    # Each tower runs on the fastest runtime that meets its agreement and batch-stability bars.
    image_label, _, text_label = first.runtime.partition("+")
    text_label = text_label or image_label
    names = runtimes.NAME_OF_LABEL
    for tower, label in (("image", image_label), ("text", text_label)):
        chosen = probes[names[label]]
        assert runtimes.passes(names[label], chosen, tower)
        assert chosen[f"{tower}_batch_cosine"] >= 0.9999
        passing = [p for n, p in probes.items() if runtimes.passes(n, p, tower)]
        assert chosen[f"{tower}_ms"] == min(p[f"{tower}_ms"] for p in passing)
    assert all(p["image_batch_mates"] == 32 for p in probes.values())  # alone, then among 32 others

    def no_export(*args: object) -> None:
        raise AssertionError("the cached export should have been used")

    monkeypatch.setattr(export, "export_model", no_export)
    monkeypatch.setattr(export, "quantize_dynamic_int8", no_export)
    monkeypatch.setattr(export, "quantize_static_int8", no_export)
    again = _embedder(tiny_model, "auto", tmp_path)
    assert again.runtime == first.runtime
    np.testing.assert_allclose(again.embed_texts(TEXTS), first.embed_texts(TEXTS), atol=1e-6)


def test_auto_gives_an_image_the_same_vector_alone_and_in_any_batch(
    tiny_model: tuple[Path, Path], tmp_path: Path, images: list
) -> None:
    # What the probe guarantees, checked on real pictures: whatever this CPU makes auto choose.
    embedder = _embedder(tiny_model, "auto", tmp_path)
    alone = np.concatenate([embedder.embed_images([image]) for image in images])
    together = embedder.embed_images(images)
    reversed_pair = embedder.embed_images([images[-1], images[0]])
    assert np.sum(alone * together, axis=1).min() >= 0.9999
    assert float(alone[0] @ reversed_pair[1]) >= 0.9999


class _BatchDependent:
    """A runtime whose vectors depend on their batch-mates, as dynamic int8 can on some CPUs."""

    label = "batch-dependent"

    def images(self, pixels: np.ndarray) -> np.ndarray:
        flat = pixels.reshape(len(pixels), -1)[:, :8]
        return flat + np.abs(pixels).max()  # a batch-wide scale leaks into every row

    def texts(self, tokens: np.ndarray) -> np.ndarray:
        return tokens[:, :8].astype(np.float32) + 1.0


def test_a_runtime_whose_vectors_depend_on_the_batch_is_refused() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    tokens = rng.integers(1, 100, size=(5, 8))
    candidate = _BatchDependent()
    figures = probe.measure(candidate, candidate, pixels, tokens)
    assert figures["image_cosine"] >= 0.9999  # it agrees with itself: agreement alone would admit it
    assert figures["image_batch_cosine"] < 0.9999
    assert not runtimes.passes("onnx", figures, "image")
    assert runtimes.passes("onnx", figures, "text")


def test_other_weights_get_their_own_export(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = tiny_model
    _embedder(tiny_model, "onnx", tmp_path).load()
    OpenClipEmbedder(str(config), "random", runtime="onnx", cache_dir=tmp_path).load()
    assert len(list((tmp_path / "onnx").iterdir())) == 2


def test_trimmed_text_matches_the_full_77_positions(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    embedder = _embedder(tiny_model, "torch", tmp_path)
    embedder.load()
    tokens = embedder._tokenizer(TEXTS)
    assert embedder._tokens(TEXTS).shape[1] < tokens.shape[1]  # the padding is cut
    model = embedder._runtime._model  # type: ignore[union-attr]
    with torch.inference_mode():
        full = model.encode_text(tokens).numpy()
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed_texts(TEXTS), full, atol=1e-5)


def test_an_unknown_runtime_is_a_clear_error(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="auto, torch, onnx, onnx-int8, onnx-int8-static, torch-bf16"):
        _embedder(tiny_model, "tensorrt", tmp_path).load()


def test_the_probe_measures_on_natural_photographs_the_package_ships() -> None:
    photos = probe.probe_photos()
    assert len(photos) >= 5
    assert all(min(photo.size) >= 128 and photo.mode == "RGB" for photo in photos)
    # Photographs, not generated noise: neighbouring pixels are alike.
    for photo in photos:
        pixels = np.asarray(photo, dtype=np.float32)
        assert np.abs(np.diff(pixels, axis=1)).mean() < 0.5 * pixels.std()  # noise: 1.13 × std


def test_static_int8_gives_a_photo_the_same_vector_alone_and_among_32_others(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    embedder = _embedder(tiny_model, "onnx-int8-static", tmp_path)
    assert embedder.runtime == "onnx-int8-static"
    photos = probe.probe_photos()
    pixels = np.stack([embedder.prepare_image(photo) for photo in photos])
    mates = probe.batch_mates(pixels)
    assert len(mates) == 32
    alone = embedder.embed_prepared([pixels[0]])
    together = embedder.embed_prepared([pixels[0], *mates])[:1]
    assert float(alone[0] @ together[0]) >= 0.9999


@pytest.mark.parametrize("runtime", ["openvino", "openvino-int8"])
def test_openvino_gives_a_photo_one_vector_alone_among_32_others_and_from_many_threads(
    tiny_model: tuple[Path, Path], tmp_path: Path, runtime: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    embedder = _embedder(tiny_model, runtime, tmp_path)
    assert embedder.runtime == runtime
    photos = probe.probe_photos()
    pixels = np.stack([embedder.prepare_image(photo) for photo in photos])
    mates = probe.batch_mates(pixels)
    alone = embedder.embed_prepared([pixels[0]])
    together = embedder.embed_prepared([pixels[0], *mates])[:1]
    assert float(alone[0] @ together[0]) >= 0.9999
    # An infer request serves one call at a time: threads calling at once each get their own.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: embedder.embed_prepared([pixels[i % len(pixels)]]), range(24)))
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer, embedder.embed_prepared([pixels[i % len(pixels)]]), atol=1e-6)


def test_once_probed_auto_builds_only_the_runtimes_it_chose(
    tiny_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _embedder(tiny_model, "auto", tmp_path)
    choice = first.runtime_choice
    built: list[str] = []
    original = runtimes._build

    def counting(name: runtimes.RuntimeName, *args: object, **kwargs: object) -> object:
        built.append(runtimes.LABELS[name])
        return original(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtimes, "_build", counting)
    again = _embedder(tiny_model, "auto", tmp_path)
    assert again.runtime_choice["image"] == choice["image"] and again.runtime_choice["text"] == choice["text"]
    assert set(built) == {choice["image"], choice["text"]} - {"torch-fp32"}
    np.testing.assert_allclose(again.embed_texts(TEXTS), first.embed_texts(TEXTS), atol=1e-6)


@pytest.mark.parametrize(
    "cached",
    [
        "[1, 2]",
        '{"onnx": [1]}',
        "{not json",
        '{"onnx": {"image_ms": 1.0}}',
        "BAD VALUES",
    ],
)
def test_a_damaged_or_older_probe_cache_is_measured_again(
    tiny_model: tuple[Path, Path], tmp_path: Path, cached: str
) -> None:
    _embedder(tiny_model, "auto", tmp_path).load()
    (path,) = next((tmp_path / "onnx").iterdir()).glob("probes-*.json")
    if cached == "BAD VALUES":  # every key there, of this probe, but not numbers
        probes = json.loads(path.read_text())
        probes["onnx"] = {**probes["onnx"], "image_ms": None, "text_cosine": "1.0"}
        cached = json.dumps(probes)
    path.write_text(cached)
    again = _embedder(tiny_model, "auto", tmp_path)
    again.load()
    probes = json.loads(path.read_text())
    assert all(p["probe_version"] == probe.PROBE_VERSION for p in probes.values())
    assert {"torch", "onnx", "onnx-int8-static"} <= set(probes)
    assert isinstance(probes["onnx"]["image_ms"], float) and isinstance(probes["onnx"]["text_cosine"], float)


def test_a_runtime_that_cannot_load_here_is_left_out_and_not_tried_again(
    tiny_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[str] = []

    class Unloadable:
        def __init__(self, *args: object) -> None:
            tries.append("openvino")
            raise RuntimeError("Exception from src/inference: unsupported operation")

    monkeypatch.setattr(runtimes, "OpenVinoRuntime", Unloadable)
    first = _embedder(tiny_model, "auto", tmp_path)
    choice = first.runtime_choice
    assert not {"openvino", "openvino-int8"} & {choice["image"], choice["text"]}
    assert "openvino" not in choice["probes"]  # left out, not probed
    assert len(first.embed_texts(TEXTS)) == len(TEXTS)
    attempts = len(tries)
    again = _embedder(tiny_model, "auto", tmp_path)
    assert again.runtime_choice["image"] == choice["image"]
    assert len(tries) == attempts  # remembered for this machine: not built, not probed again
    with pytest.raises(
        ModelUnavailableError, match="openvino runtime cannot run here: .*unsupported operation"
    ):
        _embedder(tiny_model, "openvino", tmp_path).load()  # asked for by name: a clear error


def test_auto_reports_each_towers_runtime_and_every_probe(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    choice = _embedder(tiny_model, "auto", tmp_path).runtime_choice
    assert set(choice) == {"image", "text", "probes"}
    assert {"torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-static"} <= set(choice["probes"])
    assert choice["image"] in choice["probes"] and choice["text"] in choice["probes"]
    for figures in choice["probes"].values():
        assert 0 < figures["image_batch_cosine"] <= 1.0 + 1e-6 and figures["image_ms"] > 0


def test_the_probe_times_images_beside_a_decoder_that_stops_with_it() -> None:
    import threading

    def decoders() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "lookalike-probe-decoder"]

    with probe.decoding_beside():
        assert len(decoders()) == 1 and decoders()[0].is_alive()
    assert decoders() == []


def test_the_text_tower_runs_on_the_threads_asked_and_on_two_at_most_by_default(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    config, checkpoint = tiny_model
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for asked, expected in ((0, max(1, min(2, cores))), (1, 1), (3, 3)):
        embedder = OpenClipEmbedder(
            str(config), str(checkpoint), runtime="onnx-int8-static", cache_dir=tmp_path, text_threads=asked
        )
        embedder.load()
        session = embedder._runtime._text._session  # type: ignore[union-attr]
        assert session.get_session_options().intra_op_num_threads == expected
        np.testing.assert_allclose(
            embedder.embed_texts(TEXTS),
            OpenClipEmbedder(
                str(config), str(checkpoint), runtime="onnx-int8-static", cache_dir=tmp_path
            ).embed_texts(TEXTS),
            atol=1e-5,
        )  # threads change the speed, not the vectors


def test_serve_runs_the_text_tower_on_one_thread_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lookalike.api import server
    from lookalike.cli import app as cli_app
    from lookalike.usecases import context

    seen: list[int] = []

    class Loaded(Exception):
        pass

    def stop_at_load(self: context.Context) -> object:
        seen.append(self.settings.text_threads)
        raise Loaded

    monkeypatch.setattr(context.Context, "embedder", property(stop_at_load))
    monkeypatch.setattr(server, "run", lambda *a, **k: True)
    runner = CliRunner()
    runner.invoke(cli_app, ["serve", "--db", "unused.db"])
    monkeypatch.setenv("LOOKALIKE_TEXT_THREADS", "2")
    runner.invoke(cli_app, ["serve", "--db", "unused.db"])
    assert seen == [1, 2]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_the_probe_cache_is_measured_around_not_waited_on(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    import threading

    _embedder(tiny_model, "auto", tmp_path).load()
    (path,) = next((tmp_path / "onnx").iterdir()).glob("probes-*.json")
    path.unlink()
    os.mkfifo(path)
    loaded: list[str] = []
    loader = threading.Thread(target=lambda: loaded.append(_embedder(tiny_model, "auto", tmp_path).runtime))
    loader.daemon = True  # a hang must fail this test, not stall the run
    loader.start()
    loader.join(timeout=120)
    assert not loader.is_alive() and loaded, "loading waited on the FIFO"
    import time

    deadline = time.monotonic() + 120  # the probe's result may be written by a background worker
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    written = sorted(p.name for p in path.parent.glob("probes-*"))
    assert path.is_file(), f"the probe was not written where it is looked for: {written}"
    assert json.loads(path.read_text())  # measured again, and a file again
