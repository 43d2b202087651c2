"""Where the towers run: PyTorch, or ONNX Runtime (fp32 or dynamic int8) exported once and cached.

A runtime takes preprocessed pixels and token ids as numpy arrays and returns raw features;
``choose_runtime`` picks one. On a CPU, ``auto`` takes, for each tower, the fastest runtime
whose vectors agree with PyTorch fp32 on probe inputs (cosine ≥ 0.999 for ONNX fp32, ≥ 0.99
for int8 and bfloat16) *and* are batch-stable: an input encoded alone and inside a batch of
other inputs gives the same vector (cosine ≥ 0.9999). Dynamic int8 quantisation scales
activations by the whole batch, so on some CPUs an image's vector depends on its batch-mates;
such a runtime is refused for that tower. On a GPU ``auto`` stays with PyTorch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from lookalike.embed.towers import ImageTower, text_tower
from lookalike.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)

EXPORT_VERSION = 1
# Cached probe results of an older probe (without the batch-stability figures) are measured again.
PROBE_KEYS = ("image_cosine", "text_cosine", "image_batch_cosine", "text_batch_cosine", "image_ms", "text_ms")
BATCH_STABILITY_BAR = 0.9999
PROBE_TEXTS = [
    "red floral dress",
    "a photo of a white dog",
    "black leather handbag",
    "萨摩耶",
    "striped shirt",
]


class RuntimeName(StrEnum):
    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"
    TORCH_BF16 = "torch-bf16"


ONNX_RUNTIMES = (RuntimeName.ONNX, RuntimeName.ONNX_INT8)
# Full precision must agree closely; reduced precision (int8, bfloat16) to the 0.99.
AGREEMENT_BAR = {
    RuntimeName.TORCH: 1.0 - 1e-6,
    RuntimeName.ONNX: 0.999,
    RuntimeName.ONNX_INT8: 0.99,
    RuntimeName.TORCH_BF16: 0.99,
}
LABELS = {
    RuntimeName.TORCH: "torch-fp32",
    RuntimeName.ONNX: "onnx-fp32",
    RuntimeName.ONNX_INT8: "onnx-int8",
    RuntimeName.TORCH_BF16: "torch-bf16",
}

Array = npt.NDArray[Any]


class Runtime(Protocol):
    label: str

    def images(self, pixels: npt.NDArray[np.float32]) -> Array: ...

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array: ...


class TorchRuntime:
    """open_clip's own modules, on the model's device, in the model's dtype."""

    def __init__(self, model: Any, device: str, label: str = LABELS[RuntimeName.TORCH]) -> None:
        self.label = label
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self._image = ImageTower(model)
        self._text = text_tower(model)
        self._model = model

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        with torch.inference_mode():
            features = self._image(torch.from_numpy(pixels).to(self.device, self.dtype))
        return features.float().cpu().numpy()

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        with torch.inference_mode():
            batch = torch.from_numpy(tokens).to(self.device)
            features = self._text(batch) if self._text is not None else self._model.encode_text(batch)
        return features.float().cpu().numpy()


class OnnxRuntime:
    """Two ONNX Runtime sessions on the CPU."""

    def __init__(self, image_path: Path, text_path: Path, label: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.label = label
        self._image = ort.InferenceSession(str(image_path), options, providers=providers)
        self._text = ort.InferenceSession(str(text_path), options, providers=providers)

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        return self._image.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        return self._text.run(None, {"tokens": np.ascontiguousarray(tokens, dtype=np.int64)})[0]


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


def _export(model: Any, folder: Path, image_size: int, context_length: int) -> None:
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
    # JSON and must stay clean. Gradients stay on: with them off, PyTorch's attention takes a
    # fused fast path that ONNX cannot express.
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        warnings.simplefilter("ignore")  # the exporter's tracer warnings are about code we do not own
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


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The exporter and the quantiser log pages of notes at INFO and WARNING through the root logger."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _quantize(folder: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for tower in ("image", "text"):
        target = folder / f"{tower}-int8.onnx"
        if target.exists():
            continue
        staging = folder / f"{tower}-int8.{os.getpid()}.tmp"
        # Only the weight MatMuls: int8 convolutions and embeddings cost agreement for no speed.
        quantize_dynamic(
            folder / f"{tower}.onnx", staging, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )
        os.replace(staging, target)


def _cosines(a: Array, b: Array) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.sum(a * b, axis=1).min())


def _best_ms(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _batch_mates(pixels: Array) -> Array:
    """Inputs unlike the probe images (noise, a negative, a high-contrast copy) to share their batch."""
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, 2.0, pixels[:1].shape).astype(pixels.dtype)
    return np.concatenate([noise, -pixels[:1], pixels[-1:] * 3.0])


def _batch_cosine(encode: Callable[[Array], Array], inputs: Array, mates: Array) -> float:
    """The lowest cosine between an input encoded alone and the same input inside a mixed batch."""
    alone = np.concatenate([encode(inputs[i : i + 1]) for i in range(len(inputs))])
    together = encode(np.concatenate([inputs, mates]))[: len(inputs)]
    return _cosines(alone, together)


def _probe(reference: Runtime, candidate: Runtime, pixels: Array, tokens: Array) -> dict[str, float]:
    """Agreement with the reference (lowest cosine), batch stability and speed, per tower."""
    one_text = tokens[:1]  # already as long as the tokenizer makes it (trimmed where the tower allows)
    return {
        "image_cosine": _cosines(reference.images(pixels), candidate.images(pixels)),
        "text_cosine": _cosines(reference.texts(tokens), candidate.texts(tokens)),
        "image_batch_cosine": _batch_cosine(candidate.images, pixels, _batch_mates(pixels)),
        "text_batch_cosine": _batch_cosine(candidate.texts, tokens[1:], tokens[:1]),
        "image_ms": _best_ms(lambda: candidate.images(pixels), 2),
        "text_ms": _best_ms(lambda: candidate.texts(one_text), 5),
    }


def passes(name: str, probe: dict[str, float], tower: str) -> bool:
    """Whether a probed runtime may serve a tower: close to PyTorch fp32, and the same alone or batched."""
    return (
        probe[f"{tower}_cosine"] >= AGREEMENT_BAR[RuntimeName(name)]
        and probe.get(f"{tower}_batch_cosine", 0.0) >= BATCH_STABILITY_BAR
    )


def bf16_is_fast() -> bool:
    """True where the CPU multiplies bfloat16 natively (AMX or AVX512-BF16), as oneDNN reports."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class SplitRuntime:
    """The image tower from one runtime and the text tower from another (each the fastest for its job)."""

    def __init__(self, image: Runtime, text: Runtime) -> None:
        self._image, self._text = image, text
        self.label = image.label if image.label == text.label else f"{image.label}+{text.label}"

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        return self._image.images(pixels)

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        return self._text.texts(tokens)


def _resolve(requested: str) -> RuntimeName:
    try:
        return RuntimeName(requested)
    except ValueError:
        names = ", ".join(r.value for r in RuntimeName)
        raise ConfigError(f"Unknown runtime '{requested}'. Choose one of: {names}.") from None


def _onnx_folder(model: Any, config: dict[str, Any], cache_dir: Path, int8: bool) -> Path:
    """The cached export for these weights, exported (and quantised) on first use."""
    vision = config.get("vision_cfg", {})
    image_size = vision.get("image_size", 224)
    image_size = int(image_size[0] if isinstance(image_size, (list, tuple)) else image_size)
    context_length = int(config.get("text_cfg", {}).get("context_length", 77))
    folder = cache_dir / "onnx" / weights_key(model, config)
    export = not (folder / "text.onnx").exists()
    quantize = int8 and not (folder / "text-int8.onnx").exists()
    if not (export or quantize):
        return folder
    started = time.perf_counter()
    steps = " and ".join(
        s for s, due in (("exporting the model to ONNX", export), ("quantising it to int8", quantize)) if due
    )
    log.warning("%s in %s (once per model and weights)", steps, folder)
    with _quiet_logs():
        if export:
            _export(model, folder, image_size, context_length)
        if quantize:
            _quantize(folder)
    log.warning("ONNX runtime ready in %.1f s", time.perf_counter() - started)
    return folder


def _build(name: RuntimeName, model: Any, folder: Path | None, device: str) -> Runtime:
    if name == RuntimeName.TORCH:
        return TorchRuntime(model, device)
    if name == RuntimeName.TORCH_BF16:
        return TorchRuntime(copy.deepcopy(model).to(torch.bfloat16), device, LABELS[name])
    assert folder is not None
    suffix = "-int8" if name == RuntimeName.ONNX_INT8 else ""
    return OnnxRuntime(folder / f"image{suffix}.onnx", folder / f"text{suffix}.onnx", LABELS[name])


def choose_runtime(
    requested: str,
    model: Any,
    *,
    config: dict[str, Any],
    device: str,
    cache_dir: Path,
    probe_pixels: Array,
    probe_tokens: Array,
) -> Runtime:
    """Build the runtime asked for.

    ``auto`` on a CPU probes every runtime that can run here once per model and machine
    (the result is cached beside the export) and takes, for each tower, the fastest one
    whose vectors agree with PyTorch fp32 to the bar; on a GPU it is PyTorch.
    """
    name = _resolve(requested)
    torch_runtime = TorchRuntime(model, device)
    if name == RuntimeName.TORCH or (name == RuntimeName.AUTO and device != "cpu"):
        return torch_runtime
    if device != "cpu":
        raise ConfigError(f"The {name.value} runtime runs on the CPU; use --device cpu or --runtime torch.")
    candidates = [name]
    if name == RuntimeName.AUTO:
        candidates = [RuntimeName.ONNX_INT8, RuntimeName.ONNX]
        if bf16_is_fast():
            candidates.append(RuntimeName.TORCH_BF16)
    folder: Path | None = None
    if any(c in ONNX_RUNTIMES for c in candidates):
        try:
            folder = _onnx_folder(model, config, cache_dir, int8=RuntimeName.ONNX_INT8 in candidates)
        except Exception as exc:  # an architecture the exporter cannot trace fails in many ways
            if name != RuntimeName.AUTO:
                raise ModelUnavailableError(
                    f"Cannot export the model to ONNX for --runtime {name.value}: {exc}"
                ) from exc
            log.warning("ONNX export failed (%s); trying the PyTorch runtimes only", exc)
            candidates = [c for c in candidates if c not in ONNX_RUNTIMES]
    if name != RuntimeName.AUTO:
        return _build(name, model, folder, device)

    probes_path = (folder or cache_dir / "probes" / weights_key(model, config)) / "probes.json"
    built: dict[RuntimeName, Runtime] = {RuntimeName.TORCH: torch_runtime}
    built.update({c: _build(c, model, folder, device) for c in candidates})
    probes = _probed(built, probes_path, probe_pixels, probe_tokens)

    def fastest(tower: str) -> Runtime:
        passing = [c for c in built if passes(c.value, probes[c.value], tower)] or [RuntimeName.TORCH]
        best = min(passing, key=lambda candidate: probes[candidate.value][f"{tower}_ms"])
        return built[best]

    runtime = SplitRuntime(fastest("image"), fastest("text"))
    log.info("runtime %s, chosen from %s", runtime.label, probes)
    return runtime


def _probed(
    built: dict[RuntimeName, Runtime], path: Path, pixels: Array, tokens: Array
) -> dict[str, dict[str, float]]:
    """Probe results for every built runtime: read from the cache, or measured now (and cached)."""
    try:
        probes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        probes = {}
    missing = [c for c in built if not set(PROBE_KEYS) <= set(probes.get(c.value, {}))]
    if not missing:
        return probes
    started = time.perf_counter()
    log.warning(
        "measuring %s on this CPU: agreement with PyTorch, batch stability and speed "
        "(once per model and machine)",
        ", ".join(LABELS[c] for c in missing),
    )
    reference = built[RuntimeName.TORCH]
    for candidate in missing:
        probes[candidate.value] = _probe(reference, built[candidate], pixels, tokens)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(probes, indent=1), encoding="utf-8")
    refused = [
        f"{LABELS[c]} ({tower})"
        for c in built
        for tower in ("image", "text")
        if not passes(c.value, probes[c.value], tower)
    ]
    log.warning(
        "runtime probe done in %.1f s%s",
        time.perf_counter() - started,
        f"; refused (not batch-stable or too far from PyTorch): {', '.join(refused)}" if refused else "",
    )
    return probes
