"""Encoders that turn images and texts into normalised vectors of one space.

The runtime (PyTorch, or ONNX Runtime fp32 / int8 on a CPU) is a choice made here;
nothing above this package sees it.
"""

from __future__ import annotations

from lookalike.config import Settings
from lookalike.embed.base import Embedder, Vectors, l2_normalise

__all__ = ["Embedder", "Vectors", "create_embedder", "l2_normalise"]


def create_embedder(settings: Settings) -> Embedder:
    """Build the embedder the settings name; the weights load on first use."""
    from lookalike.embed.openclip import OpenClipEmbedder

    return OpenClipEmbedder(
        settings.model,
        settings.pretrained,
        device=settings.device,
        batch_size=settings.batch_size,
        runtime=settings.runtime,
        cache_dir=settings.cache_dir,
    )
