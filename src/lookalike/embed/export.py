"""ONNX exports of the two towers, cached per weights, and their int8 copies.

Two int8 copies are made. The dynamic one scales activations by each batch's own range, so on
some CPUs an image's vector depends on its batch-mates. The static one (QDQ, per-channel
weights) is calibrated once on photographs and fixes every activation scale, so an image gets
the same vector alone or in any batch, and it is the one that is fast on CPUs without VNNI.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lookalike.embed import progress
from lookalike.embed.exported import EXPORT_VERSION
from lookalike.embed.towers import ImageTower, text_tower

# The first-use notes (export, quantisation) go out under the runtimes logger the CLI shows on stderr.
log = logging.getLogger("lookalike.embed.runtimes")

# Tower file suffixes: fp32, dynamic int8, static int8.
FP32, DYNAMIC_INT8, STATIC_INT8 = "", "-int8", "-int8s"


def weights_key(model: Any, config: dict[str, Any]) -> str:
    """A digest of the architecture, the weights and the export code: the cache key of an export."""
    import open_clip

    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps([config, open_clip.__version__, EXPORT_VERSION], sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().data)
    return digest.hexdigest()


class _FullText(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def export_model(model: Any, folder: Path, image_size: int, context_length: int) -> None:
    """Export both towers to ONNX (dynamic batch; dynamic length for a trimmable text tower)."""
    staging = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model = model.float().cpu()
    try:
        _export_towers(model, staging, image_size, context_length)
    finally:
        # The exporters leave a model in training mode; dropout (Hugging Face text towers have
        # it) would then make every later PyTorch call differ.
        model.eval()
    if folder.exists():
        shutil.rmtree(staging)  # another process finished first
        return
    os.replace(staging, folder)


def _export_towers(model: Any, staging: Path, image_size: int, context_length: int) -> None:
    pixels = torch.zeros(2, 3, image_size, image_size)
    tokens = torch.zeros(2, context_length, dtype=torch.int64)
    tokens[:, 0], tokens[:, 5] = 1, 2  # an end-of-text token inside the sequence
    tower = text_tower(model)
    # The exporter prints its progress (and whole graphs on failure); a CLI's stdout carries
    # JSON and must stay clean, and its stderr gets only lookalike's progress notes. Gradients
    # stay on: with them off, PyTorch's attention takes a fused fast path that ONNX cannot express.
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        progress.only_notes_on_stderr(),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are about code we do not own
        with progress.step("exporting the image tower to ONNX"):
            torch.onnx.export(
                ImageTower(model),
                (pixels,),
                str(staging / "image.onnx"),
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        with progress.step("exporting the text tower to ONNX"):
            if tower is not None:
                # The tracing exporter bakes the sequence length into the attention reshapes;
                # torch.export keeps it symbolic, so the trimmed queries run.
                batch = torch.export.Dim("batch", min=1, max=4096)
                length = torch.export.Dim("length", min=2, max=context_length)
                torch.onnx.export(
                    tower,
                    (tokens,),
                    str(staging / "text.onnx"),
                    input_names=["tokens"],
                    output_names=["features"],
                    dynamic_shapes={"tokens": {0: batch, 1: length}},
                    opset_version=18,
                    dynamo=True,
                )
            else:
                torch.onnx.export(
                    _FullText(model),
                    (tokens,),
                    str(staging / "text.onnx"),
                    input_names=["tokens"],
                    output_names=["features"],
                    dynamic_axes={"tokens": {0: "batch"}, "features": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )


def quantize_dynamic_int8(folder: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for tower in ("image", "text"):
        target = folder / f"{tower}{DYNAMIC_INT8}.onnx"
        if target.exists():
            continue
        staging = folder / f"{tower}-int8.{os.getpid()}.tmp"
        # Only the weight MatMuls: int8 convolutions and embeddings cost agreement for no speed.
        with progress.step(f"quantising the {tower} tower to int8 (dynamic)"):
            quantize_dynamic(
                folder / f"{tower}.onnx",
                staging,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
            )
        os.replace(staging, target)


class _Inputs:
    """ONNX Runtime's calibration reader: one input at a time, so each is calibrated as it will run."""

    def __init__(self, name: str, rows: npt.NDArray[Any]) -> None:
        self._feeds = iter([{name: rows[i : i + 1]} for i in range(len(rows))])

    def get_next(self) -> dict[str, npt.NDArray[Any]] | None:
        return next(self._feeds, None)


def quantize_static_int8(
    folder: Path, pixels: npt.NDArray[np.float32], tokens: npt.NDArray[np.int64]
) -> None:
    """QDQ int8 of each tower's matrix products, activation ranges calibrated on the inputs given.

    Only MatMul and Gemm (the attention's output projection exports as a Gemm): quantising the
    convolution, the embeddings and the norms too measured slower on an AVX2 CPU and cost
    agreement (0.976 against 0.9997 for ViT-B-32). Weights are per-channel; ``reduce_range``
    keeps the AVX2 u8×s8 kernels from saturating.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    for tower, name, rows in (("image", "pixels", pixels), ("text", "tokens", tokens)):
        target = folder / f"{tower}{STATIC_INT8}.onnx"
        if target.exists():
            continue
        staging = folder / f"{tower}{STATIC_INT8}.{os.getpid()}.tmp"
        with progress.step(f"calibrating and quantising the {tower} tower to int8 (static)"):
            quantize_static(
                folder / f"{tower}.onnx",
                staging,
                _Inputs(name, rows),  # a duck-typed CalibrationDataReader
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        os.replace(staging, target)


def onnx_folder(
    model: Any,
    config: dict[str, Any],
    cache_dir: Path,
    suffixes: tuple[str, ...],
    calibration: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None,
    *,
    key: str | None = None,
) -> Path:
    """The cached export for these weights, exported (and quantised to the suffixes asked) on first use.

    ``calibration`` (pixels and tokens) is what static int8 is calibrated on; ``key``: the weights'
    ``weights_key``, where the caller has it (it reads every weight).
    """
    vision = config.get("vision_cfg", {})
    image_size = vision.get("image_size", 224)
    image_size = int(image_size[0] if isinstance(image_size, (list, tuple)) else image_size)
    context_length = int(config.get("text_cfg", {}).get("context_length", 77))
    folder = cache_dir / "onnx" / (key or weights_key(model, config))
    export = not (folder / "text.onnx").exists()
    quantize = [s for s in suffixes if s != FP32 and not (folder / f"text{s}.onnx").exists()]
    if not (export or quantize):
        return folder
    started = time.perf_counter()
    steps = " and ".join(
        s for s, due in (("exporting the model to ONNX", export), ("quantising it to int8", quantize)) if due
    )
    log.warning("%s in %s (once per model and weights)", steps, folder)
    with progress.quiet_libraries():
        if export:
            export_model(model, folder, image_size, context_length)
        if DYNAMIC_INT8 in quantize:
            quantize_dynamic_int8(folder)
        if STATIC_INT8 in quantize:
            assert calibration is not None, "static int8 needs calibration inputs"
            quantize_static_int8(folder, *calibration)
    log.warning("ONNX runtime ready in %.1f s", time.perf_counter() - started)
    return folder
