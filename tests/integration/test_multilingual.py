"""Multilingual queries: a Hugging Face text tower (as open_clip's xlm-roberta models have), and the
warning an English-only model gives for a query in another script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.config import load_settings
from lookalike.embed.openclip import OpenClipEmbedder
from lookalike.errors import ModelUnavailableError
from lookalike.usecases import Context, Query, ingest
from lookalike.usecases import search as searching
from tests.helpers import build_tiny_multilingual_model, write_images

pytestmark = pytest.mark.slow
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def multilingual_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny_multilingual_model(tmp_path_factory.mktemp("tiny-xlmr"))


class RecordingTokenizer:
    """Passes texts to the real tokenizer and keeps what it was given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def __call__(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.seen.extend(texts)
        return self.inner(texts, *args, **kwargs)


def test_a_cjk_query_reaches_the_multilingual_tokenizer_intact(
    tmp_path: Path, multilingual_model: tuple[Path, Path]
) -> None:
    config, checkpoint = multilingual_model
    settings = load_settings(model=str(config), pretrained=str(checkpoint), db=str(tmp_path / "m.db"))
    service = Context(settings)
    ingest.index(service, str(write_images(tmp_path / "photos", 6)[0].parent))
    embedder = service.embedder
    assert isinstance(embedder, OpenClipEmbedder) and embedder.multilingual
    recorder = RecordingTokenizer(embedder._tokenizer)
    embedder._tokenizer = recorder

    result = searching.search(service, Query(text="萨摩耶", k=3))
    assert recorder.seen == ["萨摩耶"]
    assert len(result.hits) == 3 and result.warnings == []
    hf = recorder.inner.tokenizer
    ids = recorder.inner(["萨摩耶"])[0].tolist()
    assert hf.unk_token_id not in ids
    assert hf.decode(ids, skip_special_tokens=True) == "萨摩耶"
    # Different scripts give different vectors, and the same text the same one on every call.
    vectors = embedder.embed_texts(["萨摩耶", "萨摩耶", "собака самоед", "a samoyed dog"])
    assert np.allclose(vectors[0], vectors[1])
    assert float(vectors[0] @ vectors[2]) < 0.999 and float(vectors[0] @ vectors[3]) < 0.999
    service.close()


def test_auto_runtime_of_a_hugging_face_text_tower_agrees_with_pytorch(
    multilingual_model: tuple[Path, Path],
) -> None:
    config, checkpoint = multilingual_model
    texts = ["萨摩耶", "red floral dress", "собака самоед на снегу"]
    auto = OpenClipEmbedder(str(config), str(checkpoint), runtime="auto").embed_texts(texts)
    torch_vectors = OpenClipEmbedder(str(config), str(checkpoint), runtime="torch").embed_texts(texts)
    assert np.min(np.sum(auto * torch_vectors, axis=1)) > 0.99


def test_english_model_warns_about_a_mostly_non_latin_query(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    config, checkpoint = tiny_model
    settings = load_settings(model=str(config), pretrained=str(checkpoint), db=str(tmp_path / "e.db"))
    service = Context(settings)
    ingest.index(service, str(write_images(tmp_path / "photos", 4)[0].parent))
    warned = searching.search(service, Query(text="萨摩耶 狗", k=2))
    assert len(warned.hits) == 2
    assert len(warned.warnings) == 1 and "xlm-roberta-base-ViT-B-32" in warned.warnings[0]
    assert warned.to_dict()["warnings"] == warned.warnings
    assert searching.search(service, Query(text="red floral dress", k=2)).warnings == []
    assert searching.search(service, Query(text="Samoyed 萨摩耶 white fluffy dog", k=2)).warnings == []
    service.close()


def test_offline_multilingual_model_names_what_to_download(tmp_path: Path) -> None:
    embedder = OpenClipEmbedder("xlm-roberta-base-ViT-B-32", "random", cache_dir=tmp_path)
    assert embedder.multilingual
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download xlm-roberta-base"):
        embedder.load()
