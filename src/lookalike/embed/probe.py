"""The runtime probe's measurements: agreement with PyTorch fp32 on natural photographs, batch
stability, speed (images timed beside a decoding thread, as ingest runs them), and its cache.

``runtimes.choose_runtime`` decides with these figures; this module only measures and keeps them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike import durable

if TYPE_CHECKING:
    from lookalike.embed.runtimes import Runtime

Array = npt.NDArray[Any]
Encode = Callable[[Array], Array]

# Cached probe results of an older probe (fewer batch-mates, no photographs, the batch timed on its
# first call or with no decoding beside it) are measured again.
PROBE_VERSION = 3.0
PROBE_KEYS = (
    "probe_version",
    "image_cosine",
    "text_cosine",
    "image_batch_cosine",
    "text_batch_cosine",
    "image_ms",
    "text_ms",
    "image_batch_mates",
)
UNAVAILABLE = "unavailable"  # a cached probe's mark of a runtime that did not build on this machine
BATCH_STABILITY_BAR = 0.9999
BATCH_MATES = 32  # an image alone against the same image among this many others
PROBE_TEXTS = [
    "red floral dress",
    "a photo of a white dog",
    "black leather handbag",
    "萨摩耶",
    "striped shirt",
]


def _photo_paths() -> list[Any]:
    folder = resources.files("lookalike.embed") / "photos"
    return sorted((p for p in folder.iterdir() if p.name.endswith(".jpg")), key=lambda p: p.name)


def probe_photos(limit: int | None = None) -> list[Image.Image]:
    """The natural photographs the package ships (``embed/photos``), in a fixed order (the first
    ``limit`` of them)."""
    photos = []
    for path in _photo_paths()[:limit]:
        with path.open("rb") as handle:
            photos.append(Image.open(handle).convert("RGB"))
    return photos


@contextlib.contextmanager
def decoding_beside() -> Iterator[None]:
    """A second thread decoding and resizing the package's photographs while the block runs, as
    ingest's workers decode beside the encoder.

    A runtime whose threads meet at every step loses more to a core that another thread holds than
    one that shares its work out: ViT-B-32's image tower on a 2-core Xeon with AMX took 8.1 ms an
    image alone with PyTorch bfloat16 and with OpenVINO, and beside a decoder 20.9 and 17.5 ms.
    """
    photos = [path.read_bytes() for path in _photo_paths()]
    stop = threading.Event()

    def decode() -> None:
        while not stop.is_set():
            for data in photos:
                with Image.open(io.BytesIO(data)) as image:
                    image.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
                if stop.is_set():
                    return

    thread = threading.Thread(target=decode, name="lookalike-probe-decoder", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _cosines(a: Array, b: Array) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.sum(a * b, axis=1).min())


def _best_ms(run: Callable[[], Any], repeats: int, *, warm: bool = True) -> float:
    if warm:
        run()  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def batch_mates(pixels: Array, count: int = BATCH_MATES) -> Array:
    """``count`` inputs to share a batch with the probe photographs: the other photographs mirrored,
    darkened and over-exposed, a negative and noise, so that a batch-wide scale has a wide range to leak."""
    rng = np.random.default_rng(11)
    variants = [pixels[:, :, :, ::-1], pixels * 0.3, pixels * 3.0, -pixels]
    noise = rng.normal(0.0, 2.0, (count, *pixels.shape[1:])).astype(pixels.dtype)
    return np.concatenate([*variants, noise])[:count].astype(pixels.dtype)


def _batch_cosine(encode: Callable[[Array], Array], inputs: Array, mates: Array) -> float:
    """The lowest cosine between an input encoded alone and the same input inside a mixed batch."""
    alone = np.concatenate([encode(inputs[i : i + 1]) for i in range(len(inputs))])
    together = encode(np.concatenate([inputs, mates]))[: len(inputs)]
    return _cosines(alone, together)


def measure_images(reference: Encode, candidate: Encode, pixels: Array) -> dict[str, float]:
    """Agreement with the reference (lowest cosine), batch stability and speed of an image encoder.

    ``image_ms`` is per image of the stability batch (a photograph and its 32 batch-mates, about
    what ingest runs), the better of two runs beside a decoding thread, as in ingest (a runtime
    may plan its first call at a new shape: the stability check is that call).
    """
    mates = batch_mates(pixels)
    batch = np.concatenate([pixels, mates])
    image_batch_cosine = _batch_cosine(candidate, pixels, mates)
    with decoding_beside():
        image_ms = _best_ms(lambda: candidate(batch), 2, warm=False) / len(batch)
    return {
        "image_cosine": _cosines(reference(pixels), candidate(pixels)),
        "image_batch_cosine": image_batch_cosine,
        "image_batch_mates": float(len(mates)),
        "image_ms": image_ms,
    }


def measure(reference: Runtime, candidate: Runtime, pixels: Array, tokens: Array) -> dict[str, float]:
    """Agreement with the reference (lowest cosine), batch stability and speed, per tower
    (``measure_images``; ``text_ms`` is one query, alone)."""
    one_text = tokens[:1]  # already as long as the tokenizer makes it (trimmed where the tower allows)
    images = measure_images(reference.images, candidate.images, pixels)
    return {
        "probe_version": PROBE_VERSION,
        **images,
        "text_cosine": _cosines(reference.texts(tokens), candidate.texts(tokens)),
        "text_batch_cosine": _batch_cosine(candidate.texts, tokens[1:], tokens[:1]),
        "text_ms": _best_ms(lambda: candidate.texts(one_text), 5),
    }


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags, as /proc/cpuinfo gives them first (empty where it is missing)."""
    model, flags = "", frozenset[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


def machine_key() -> str:
    """A digest of what a runtime's speed depends on besides the model: the CPU, its extensions, the
    cores this process may use and the runtimes' versions. A probe measured elsewhere is not reused."""
    import torch

    model, flags = cpu_info()
    described = [platform.machine(), platform.processor(), model, " ".join(sorted(flags))]
    # The cores this process may use, not torch.get_num_threads(): OpenMP keeps that per thread, so
    # a loader on another thread (a server's worker) would look for a probe under another name.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    described += [str(cores), torch.__version__]
    for package in ("onnxruntime", "openvino"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            described.append(f"{package} {importlib.metadata.version(package)}")
    return hashlib.blake2b("\n".join(described).encode(), digest_size=6).hexdigest()


def complete(figures: dict[str, Any]) -> bool:
    """Whether cached figures are this probe's, whole, and numbers (a damaged cache is measured again)."""
    if figures.get("probe_version") != PROBE_VERSION:
        return False
    if figures.get(UNAVAILABLE) == 1.0:
        return True
    if not set(PROBE_KEYS) <= set(figures):
        return False
    values = [figures[key] for key in PROBE_KEYS]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values)


def write_probes(path: Path, probes: dict[str, dict[str, float]]) -> None:
    """Written whole under a temporary name, then renamed: a process reading it never sees half."""
    durable.write_text(path, json.dumps(probes, indent=1), step="probe")


def cached_probes(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():  # missing, or a FIFO or device put there: reading it could hang
        return {}
    try:
        probes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(probes, dict):
        return {}
    return {name: figures for name, figures in probes.items() if isinstance(figures, dict)}
