"""Model families are looked up in a registry: what a model embeds, its weights and its runtimes."""

from __future__ import annotations

import pytest

from lookalike.config import DEFAULT_PRETRAINED, load_settings
from lookalike.embed import Family, create_embedder, family_of, is_image_only, register, registry, weights_of
from lookalike.embed.sessions import RuntimeName
from lookalike.errors import ConfigError
from tests.helpers import FakeEmbedder


def test_a_cnn_and_its_stored_label_are_image_only_and_clip_models_are_not() -> None:
    assert is_image_only("efficientnet-lite0") and is_image_only("EfficientNet-Lite0:imagenet")
    assert not is_image_only("ViT-B-32") and not is_image_only("ViT-B-32:laion2b_s34b_b79k")
    assert not is_image_only("/models/tiny-clip.json")
    assert family_of("efficientnet-lite0").runtimes == (RuntimeName.AUTO, RuntimeName.TORCH, RuntimeName.ONNX)
    assert set(family_of("ViT-B-32").runtimes) == set(RuntimeName)


def test_the_clip_default_weights_mean_the_cnns_packaged_ones_and_nothing_else_changes() -> None:
    assert weights_of(load_settings(model="efficientnet-lite0")) == "imagenet"
    assert weights_of(load_settings(model="efficientnet-lite0", pretrained="/w/lite0.pth")) == "/w/lite0.pth"
    assert weights_of(load_settings(model="ViT-B-32")) == DEFAULT_PRETRAINED


def test_a_registered_family_is_built_and_asked_before_open_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FAMILIES", list(registry.families()))  # registered for this test only
    built: list[tuple[str, str]] = []

    def build(settings: object, weights: str) -> FakeEmbedder:
        built.append((getattr(settings, "model", ""), weights))
        return FakeEmbedder(dim=16)

    register(
        Family("fake", lambda model: model.startswith("fake-"), build, image_only=True, default_weights="own")
    )
    embedder = create_embedder(load_settings(model="fake-small"))
    assert isinstance(embedder, FakeEmbedder) and embedder.dim == 16
    assert built == [("fake-small", "own")]
    assert is_image_only("fake-small:own") and not is_image_only("ViT-B-32")


def test_a_runtime_that_does_not_serve_the_family_is_refused_with_the_ones_that_do() -> None:
    with pytest.raises(
        ConfigError,
        match=r"--runtime onnx-int8 does not run efficientnet-lite0; its runtimes: auto, torch, onnx",
    ):
        create_embedder(load_settings(model="efficientnet-lite0", runtime="onnx-int8"))
    with pytest.raises(ConfigError, match=r"Unknown runtime 'fastest'"):
        create_embedder(load_settings(model="ViT-B-32", runtime="fastest"))
    assert create_embedder(load_settings(model="efficientnet-lite0", runtime="torch")).dim == 1280
