"""Rank-1 rate of copies of real photographs under EfficientNet-Lite0, ImageNet weights vs random ones.

    python scripts/measure_cnn_copies.py

The photographs are scikit-image's sample images (pip install scikit-image). Each is searched
with a resized (45 %), a cropped (84 %) and a resized + cropped copy, all recompressed as JPEG
quality 50. Printed per kind: how many copies find their original first, and the mean margin of
the original's cosine over the best other photograph (how clearly it wins).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import skimage
from PIL import Image

from lookalike.embed.cnn import TimmEmbedder

KINDS = ("resize", "crop", "resize+crop")


def copy_of(image: Image.Image, kind: str) -> Image.Image:
    w, h = image.size
    if "crop" in kind:
        image = image.crop((int(w * 0.1), int(h * 0.06), int(w * 0.94), int(h * 0.9)))
    if "resize" in kind:
        image = image.resize((max(1, int(image.width * 0.45)), max(1, int(image.height * 0.45))))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=50)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def main() -> None:
    folder = Path(skimage.__file__).parent / "data"
    files = sorted(p for p in folder.iterdir() if p.suffix in {".png", ".jpg"} and p.stat().st_size > 20_000)
    photos = [Image.open(p).convert("RGB") for p in files]
    print(f"{len(files)} photographs from {folder}")
    for weights in ("imagenet", "random"):
        embedder = TimmEmbedder("efficientnet-lite0", weights)
        originals = embedder.embed_images(photos)
        for kind in KINDS:
            scores = embedder.embed_images([copy_of(p, kind) for p in photos]) @ originals.T
            own = np.diag(scores)
            others = np.where(np.eye(len(files), dtype=bool), -np.inf, scores).max(axis=1)
            first = int((scores.argmax(axis=1) == np.arange(len(files))).sum())
            print(
                f"{weights:8s} {kind:12s} rank-1 {first}/{len(files)}  "
                f"margin over the best other photo: mean {np.mean(own - others):.3f}, min {np.min(own - others):.3f}"
            )


if __name__ == "__main__":
    main()
