"""Encoders that turn images and texts into normalised vectors of one space.

Model families (registry.py) say how each model loads, whether it embeds images only, and which
runtimes serve it.

The runtime (PyTorch, or ONNX Runtime fp32 / int8 on a CPU) is a choice made here;
nothing above this package sees it.
"""

from __future__ import annotations

from lookalike.config import Settings
from lookalike.embed.base import Embedder, Vectors, l2_normalise
from lookalike.embed.cnn import CNN_MODELS
from lookalike.embed.detect import Detection, Detector
from lookalike.embed.registry import Family, create_embedder, family_of, is_image_only, register, weights_of

__all__ = [
    "CNN_MODELS",
    "Detection",
    "Detector",
    "Embedder",
    "Family",
    "Vectors",
    "create_detector",
    "create_embedder",
    "family_of",
    "is_image_only",
    "l2_normalise",
    "register",
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
