"""The model lifecycle: public embed_* methods, a lazy load, and the runtime's encode."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

Vectors = npt.NDArray[np.float32]
"""A (n, dim) float32 matrix of L2-normalised embeddings."""

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


MAX_ASPECT_RATIO = 100
"""How many times longer than its short side a picture (or crop) given to a model may be.

Encoders resize the short side to their input size before the centre crop, so a 1,000,000 × 1
PNG (3 KB, 1 Mpx) would become 224,000,000 × 224 pixels: 150 GB. At 100:1 the resize stays under
23 Mpx even for a 448-pixel model; banners (8:1), panoramas and long product-detail pictures (40:1)
are well inside it.
"""
TYPICAL_INPUT = 224  # the input size the reason quotes (most CLIP models)


def shape_problem(width: int, height: int) -> str | None:
    """Why a model cannot be given a picture of this shape (too elongated), or None."""
    short, long = sorted((width, height))
    if short < 1:
        return f"no pixels: {width}x{height}"
    if long <= short * MAX_ASPECT_RATIO:
        return None
    ratio = long / short
    resized = (f"{round(TYPICAL_INPUT * ratio):,}", str(TYPICAL_INPUT))
    wide, tall = resized if width >= height else resized[::-1]
    return (
        f"extreme aspect ratio: {width}x{height} pixels is {ratio:,.0f}:1, over the limit of "
        f"{MAX_ASPECT_RATIO}:1 (resized to {TYPICAL_INPUT} pixels on its short side for a model, it would "
        f"be {wide}x{tall} pixels)"
    )


RANDOM_WEIGHTS = frozenset({"random", "none"})
"""``--pretrained random`` builds the architecture with random weights (benchmarks, smoke tests)."""


def resolve_device(device: str) -> str:
    """``auto`` → CUDA when PyTorch sees a GPU, else the CPU; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_label(pretrained: str) -> str:
    """How a model's weights are named in its label: a local file by its file name."""
    return Path(pretrained).name if Path(pretrained).expanduser().is_file() else pretrained


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # A zero vector stays zero instead of becoming NaN.
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class Embedder(ABC):
    """Turns images and texts into vectors of one space.

    Subclasses implement ``_load`` and the ``_encode_*`` methods for one runtime; callers
    only use ``embed_images``, ``embed_texts``, ``dim`` and ``name``. The model is loaded
    on first use, once, even when several threads ask at the same time.
    """

    def __init__(self, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self._loaded = False
        self._load_lock = threading.Lock()

    @property
    @abstractmethod
    def name(self) -> str:
        """A label for the model and its weights, stored with the collection."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """The embedding size; known without loading the weights where possible."""

    @property
    def supports_text(self) -> bool:
        return True

    @property
    def multilingual(self) -> bool:
        """Whether the text tower was trained on many languages (else: English)."""
        return False

    @property
    def logit_scale(self) -> float:
        """The factor CLIP multiplies cosines by before a softmax over labels."""
        return 100.0

    @property
    def input_size(self) -> int | None:
        """The square side the model sees; a decoder may decode a JPEG at a reduced scale above it."""
        return None

    @property
    def runtime(self) -> str:
        """What runs the model (e.g. torch-fp32, onnx-int8); known once loaded."""
        return "python"

    @property
    def runtime_choice(self) -> dict[str, Any]:
        """What runs each tower (``image``, ``text``) and, where ``auto`` probed, what it measured of each
        runtime (``probes``: agreement with PyTorch fp32, batch stability, speed); known once loaded."""
        return {"image": self.runtime, "text": self.runtime}

    def load(self) -> None:
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def load_text(self) -> None:
        """Load what embedding texts needs (a model may load its text tower alone)."""
        self.load()

    def load_image(self) -> None:
        """Load what embedding images needs (a model may load its image tower alone)."""
        self.load()

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        """Embed RGB images in batches of ``batch_size``; returns one normalised row per image."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load_image()
        parts = [self._encode_images(batch) for batch in batched(images, self.batch_size)]
        return l2_normalise(np.concatenate(parts))

    def prepare_image(self, image: Image.Image) -> Any:
        """Model-ready input for one image; thread-safe, so ingest workers run it beside the encoder."""
        return image

    def embed_prepared(self, prepared: Sequence[Any]) -> Vectors:
        """Embed what ``prepare_image`` returned, in batches of ``batch_size``."""
        return self.embed_images(prepared)

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """Embed texts in batches of ``batch_size``; returns one normalised row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load_text()
        parts = [self._encode_texts(batch) for batch in batched(texts, self.batch_size)]
        return l2_normalise(np.concatenate(parts))

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]: ...

    @abstractmethod
    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]: ...
