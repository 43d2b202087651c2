"""Where an image-only CNN runs: PyTorch, or ONNX Runtime fp32 from an export cached by its weights.

``onnx`` exports the model once (the folder is named by the weights' digest, so an export never goes
stale) and runs it on every CPU thread. ``auto`` on a CPU measures both once per model and machine
on the probe's photographs, as the CLIP runtimes are measured (probe.py: agreement with PyTorch fp32,
batch stability, speed; cached beside the export), and takes the faster one that agrees (cosine
≥ 0.999) and gives an image the same vector alone or in a batch; on a GPU it is PyTorch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lookalike import durable
from lookalike.embed import progress
from lookalike.embed.probe import (
    BATCH_STABILITY_BAR,
    PROBE_VERSION,
    cached_probes,
    machine_key,
    measure_images,
    write_probes,
)
from lookalike.embed.sessions import LABELS, OnnxTower, RuntimeName
from lookalike.errors import ConfigError, ModelUnavailableError

log = logging.getLogger("lookalike.embed.runtimes")
Array = npt.NDArray[Any]
AGREEMENT_BAR = 0.999  # full precision against full precision
_KEYS = ("image_cosine", "image_batch_cosine", "image_ms")


@dataclass
class CnnRuntime:
    label: str
    images: Callable[[Array], Array]
    probes: dict[str, dict[str, float]] = field(default_factory=dict)


def torch_runtime(model: Any, device: str) -> CnnRuntime:
    def images(pixels: Array) -> Array:
        with torch.inference_mode():
            features = model(torch.from_numpy(np.ascontiguousarray(pixels)).to(device))
        return np.asarray(features.float().cpu().numpy(), dtype=np.float32)

    return CnnRuntime(LABELS[RuntimeName.TORCH], images)


def export(model: Any, folder: Path, side: int) -> Path:
    """The model's ONNX export in ``folder`` (made once; written whole or not at all)."""
    path = folder / "image.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    pixels = torch.zeros(1, 3, side, side)

    def write(target: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")  # the tracer's warnings are about code we do not own
            torch.onnx.export(
                model,
                (pixels,),
                str(target),
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )

    with progress.step("exporting the model to ONNX"):
        durable.write_with(path, write, step="cnn.export")
    return path


def onnx_runtime(path: Path) -> CnnRuntime:
    tower = OnnxTower(path, "image", torch.get_num_threads())
    return CnnRuntime(LABELS[RuntimeName.ONNX], tower.run)


def _complete(figures: dict[str, Any] | None) -> bool:
    if not figures or figures.get("probe_version") != PROBE_VERSION:
        return False
    values = [figures.get(key) for key in _KEYS]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values)


def _passes(figures: dict[str, float]) -> bool:
    return figures["image_cosine"] >= AGREEMENT_BAR and figures["image_batch_cosine"] >= BATCH_STABILITY_BAR


def choose(requested: str, model: Any, *, device: str, folder: Path, side: int, pixels: Array) -> CnnRuntime:
    """The runtime asked for; ``auto``: the faster of PyTorch and ONNX Runtime that passes the probe.

    ``folder`` holds the export and the probe of these weights; ``pixels`` are the probe's
    photographs, preprocessed for the model.
    """
    reference = torch_runtime(model, device)
    if requested == RuntimeName.TORCH or (requested == RuntimeName.AUTO and device != "cpu"):
        return reference
    if device != "cpu":
        raise ConfigError(f"The {requested} runtime runs on the CPU; use --device cpu or --runtime torch.")
    try:
        onnx = onnx_runtime(export(model, folder, side))
    except Exception as exc:  # an architecture the exporter cannot trace fails in many ways
        if requested == RuntimeName.ONNX:
            raise ModelUnavailableError(f"Cannot export the model to ONNX for --runtime onnx: {exc}") from exc
        log.warning("ONNX export failed (%s); the model runs on PyTorch", exc)
        return reference
    if requested == RuntimeName.ONNX:
        return onnx
    path = folder / f"probes-{machine_key()}.json"
    probes = cached_probes(path)
    runtimes = {RuntimeName.TORCH.value: reference, RuntimeName.ONNX.value: onnx}
    if not all(_complete(probes.get(name)) for name in runtimes):
        log.warning("measuring torch-fp32 and onnx-fp32 on this CPU (once per model and machine)")
        with progress.step("measuring the runtimes: agreement, batch stability, speed"):
            probes = {
                name: {
                    "probe_version": PROBE_VERSION,
                    **measure_images(reference.images, runtime.images, pixels),
                }
                for name, runtime in runtimes.items()
            }
        write_probes(path, probes)
    passing = [name for name in runtimes if _passes(probes[name])] or [RuntimeName.TORCH.value]
    best = runtimes[min(passing, key=lambda name: probes[name]["image_ms"])]
    best.probes = {LABELS[RuntimeName(name)]: figures for name, figures in probes.items()}
    log.info("runtime %s, chosen from %s", best.label, probes)
    return best
