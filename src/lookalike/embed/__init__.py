"""Encoders that turn images and texts into normalised vectors of one space.

The runtime (PyTorch, or ONNX Runtime fp32 / int8 on a CPU) is a choice made here;
nothing above this package sees it.
"""

from __future__ import annotations

from lookalike.config import DEFAULT_PRETRAINED, Settings
from lookalike.embed.base import Embedder, Vectors, l2_normalise
from lookalike.embed.cnn import CNN_MODELS, PACKAGED, is_image_only
from lookalike.embed.detect import Detection, Detector

__all__ = [
    "CNN_MODELS",
    "Detection",
    "Detector",
    "Embedder",
    "Vectors",
    "create_detector",
    "create_embedder",
    "is_image_only",
    "l2_normalise",
    "weights_of",
]


def create_detector(settings: Settings) -> Detector:
    """Build the object detector the settings name; its weights load on first use."""
    from lookalike.embed.detect import TorchvisionDetector

    return TorchvisionDetector(
        settings.detector,
        settings.detector_weights,
        device=settings.device,
        min_score=settings.detect_min_score,
        min_size=settings.detect_min_size,
        max_boxes=settings.detect_max_boxes,
    )


def weights_of(settings: Settings) -> str:
    """The weights the settings' model loads: the CLIP default tag means nothing to a CNN, which gets its
    packaged ImageNet weights."""
    if is_image_only(settings.model) and settings.pretrained == DEFAULT_PRETRAINED:
        return PACKAGED
    return settings.pretrained


def create_embedder(settings: Settings) -> Embedder:
    """Build the embedder the settings name; the weights load on first use."""
    from lookalike.embed.openclip import OpenClipEmbedder

    if is_image_only(settings.model):
        from lookalike.embed.cnn import TimmEmbedder

        weights = weights_of(settings)
        return TimmEmbedder(settings.model, weights, device=settings.device, batch_size=settings.batch_size)

    return OpenClipEmbedder(
        settings.model,
        settings.pretrained,
        device=settings.device,
        batch_size=settings.batch_size,
        runtime=settings.runtime,
        cache_dir=settings.cache_dir,
        text_threads=settings.text_threads,
        probe=settings.probe,
    )
