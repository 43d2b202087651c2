"""The tiny open_clip model, loaded through the same code a user's checkpoint takes, with Milvus Lite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lookalike.config import load_settings
from lookalike.embed import create_embedder
from lookalike.embed.openclip import OpenClipEmbedder
from lookalike.errors import ConfigError, ModelUnavailableError
from lookalike.ingest import decode_image
from lookalike.usecases import Context, Query, backup, embedding, ingest
from lookalike.usecases import search as searching
from tests.helpers import write_images


def tiny_service(tmp_path: Path, tiny_model: tuple[Path, Path], db: str = "lookalike.db") -> Context:
    config, checkpoint = tiny_model
    settings = load_settings(db=str(tmp_path / db), model=str(config), pretrained=str(checkpoint), workers=2)
    return Context(settings)


def test_tiny_model_loads_from_config_json_and_checkpoint(tiny_model: tuple[Path, Path]) -> None:
    config, checkpoint = tiny_model
    embedder = create_embedder(load_settings(model=str(config), pretrained=str(checkpoint), batch_size=2))
    assert embedder.dim == 32
    images = [decode_image(p.read_bytes()).image for p in write_images(Path(config).parent / "imgs", 5)]
    vectors = embedder.embed_images(images)
    assert vectors.shape == (5, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Batching leaves an image's vector as it was (dynamic int8 quantises each batch's
    # activations with its own scale, hence a cosine bar rather than equality).
    assert float(embedder.embed_images(images[3:4])[0] @ vectors[3]) >= 0.999
    texts = embedder.embed_texts(["floral top", "萨摩耶", "red shoe"])
    assert texts.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)


def test_the_checkpoint_weights_are_really_loaded(tiny_model: tuple[Path, Path]) -> None:
    config, checkpoint = tiny_model
    image = decode_image(write_images(Path(config).parent / "one", 1)[0].read_bytes()).image
    loaded = OpenClipEmbedder(str(config), str(checkpoint)).embed_images([image])
    again = OpenClipEmbedder(str(config), str(checkpoint)).embed_images([image])
    random = OpenClipEmbedder(str(config), "random").embed_images([image])
    np.testing.assert_allclose(loaded, again, atol=1e-6)
    assert float(loaded[0] @ random[0]) < 0.99


def test_indexed_image_searched_by_itself_ranks_first(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    paths = write_images(tmp_path / "photos", 30)
    service = tiny_service(tmp_path, tiny_model)
    assert ingest.index(service, str(tmp_path / "photos"), source="product").indexed == 30
    for path in paths[::6]:
        hits = searching.search(service, Query(image=str(path), k=5)).hits
        assert hits[0].item.uri == str(path.resolve())
        assert hits[0].score >= 0.99
    text = searching.search(service, Query(text="floral top", k=5))
    assert len(text.hits) == 5 and all(-1.0 <= h.score <= 1.0 for h in text.hits)
    assert text.took_ms > 0
    # The collection records how it was embedded: the label people read, the files and their hash.
    record = embedding.parse(service.store.model())
    assert record is not None and record.label == "tiny-clip.json:tiny-clip.pt" and not record.image_only
    assert record.pretrained == str(Path(tiny_model[1]).resolve()) and len(record.sha256) == 64


def test_export_import_round_trip_with_the_real_model(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    paths = write_images(tmp_path / "photos", 8)
    source = tiny_service(tmp_path, tiny_model, "a.db")
    ingest.index(source, str(tmp_path / "photos"))
    backup.export(source, str(tmp_path / "backup.parquet"))
    target = tiny_service(tmp_path, tiny_model, "b.db")
    backup.import_(target, str(tmp_path / "backup.parquet"))
    query = Query(image=str(paths[3]), k=8)
    assert [h.item.id for h in searching.search(source, query).hits] == [
        h.item.id for h in searching.search(target, query).hits
    ]


def test_offline_tag_gives_advice_without_reaching_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k")
    assert embedder.dim == 512  # known from the architecture, without weights
    with pytest.raises(ModelUnavailableError) as caught:
        embedder.load()
    message = str(caught.value)
    assert "--pretrained /path/to/" in message and "laion2b_s34b_b79k" in message
    assert "Traceback" not in message


def test_missing_checkpoint_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        OpenClipEmbedder("ViT-B-32", str(tmp_path / "nope.pt")).load()


def test_checkpoint_of_another_architecture_is_refused(tiny_model: tuple[Path, Path]) -> None:
    _, checkpoint = tiny_model
    with pytest.raises(ModelUnavailableError, match="does not fit"):
        OpenClipEmbedder("RN50", str(checkpoint)).load()


def test_unknown_model_and_unknown_tag_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown open_clip model"):
        OpenClipEmbedder("ViT-Nope", "random")
    with pytest.raises(ConfigError, match="Known tags"):
        OpenClipEmbedder("ViT-B-32", "no_such_tag").load()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ConfigError, match="not an open_clip model config"):
        OpenClipEmbedder(str(bad), "random")


def test_hub_style_config_with_model_cfg_is_accepted(tmp_path: Path, tiny_model: tuple[Path, Path]) -> None:
    config, checkpoint = tiny_model
    wrapped = tmp_path / "open_clip_config.json"
    wrapped.write_text(json.dumps({"model_cfg": json.loads(config.read_text()), "preprocess_cfg": {}}))
    embedder = OpenClipEmbedder(str(wrapped), str(checkpoint))
    assert embedder.embed_texts(["x"]).shape == (1, 32)
