"""Where the towers run: PyTorch, ONNX Runtime (fp32, dynamic or static int8) or OpenVINO, from one export.

A runtime takes preprocessed pixels and token ids as numpy arrays and returns raw features;
``choose_runtime`` picks one. On a CPU, ``auto`` takes, for each tower, the fastest runtime
whose vectors agree with PyTorch fp32 on natural photographs (cosine ≥ 0.999 for ONNX fp32,
≥ 0.99 for int8 and bfloat16) *and* are batch-stable: a photograph encoded alone and inside a
batch of 32 others gives the same vector (cosine ≥ 0.9999). Dynamic int8 quantisation scales
activations by the whole batch, so on some CPUs an image's vector depends on its batch-mates;
such a runtime is refused for that tower. Static int8 (calibrated once, fixed scales) keeps
vectors batch-independent by construction, and the probe checks it like the others. OpenVINO
runs the same fp32 export in the precision its CPU plugin picks for the machine: bfloat16 on the
matrix units of an AMX or AVX512-BF16 CPU, fp32 elsewhere; ``openvino-int8`` compiles the static int8
export (its calibrated scales) for OpenVINO's int8 kernels. On a GPU ``auto`` stays with PyTorch.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from lookalike.embed.export import DYNAMIC_INT8, FP32, STATIC_INT8, onnx_folder, weights_key
from lookalike.embed.probe import (
    BATCH_STABILITY_BAR,
    PROBE_VERSION,
    UNAVAILABLE,
    cached_probes,
    complete,
    machine_key,
    measure,
    write_probes,
)
from lookalike.embed.towers import ImageTower, text_tower
from lookalike.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)


class RuntimeName(StrEnum):
    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"
    ONNX_INT8_STATIC = "onnx-int8-static"
    TORCH_BF16 = "torch-bf16"
    OPENVINO = "openvino"
    OPENVINO_INT8 = "openvino-int8"


# The export each runtime reads (OpenVINO compiles the fp32 and the static int8 ones itself).
ONNX_SUFFIX = {
    RuntimeName.ONNX: FP32,
    RuntimeName.ONNX_INT8: DYNAMIC_INT8,
    RuntimeName.ONNX_INT8_STATIC: STATIC_INT8,
    RuntimeName.OPENVINO: FP32,
    RuntimeName.OPENVINO_INT8: STATIC_INT8,
}
# Full precision must agree closely; reduced precision (int8, bfloat16) to the 0.99.
AGREEMENT_BAR = {
    RuntimeName.TORCH: 1.0 - 1e-6,
    RuntimeName.ONNX: 0.999,
    RuntimeName.ONNX_INT8: 0.99,
    RuntimeName.ONNX_INT8_STATIC: 0.99,
    RuntimeName.TORCH_BF16: 0.99,
    RuntimeName.OPENVINO: 0.99,  # bfloat16 where the CPU has it
    RuntimeName.OPENVINO_INT8: 0.99,
}
LABELS = {
    RuntimeName.TORCH: "torch-fp32",
    RuntimeName.ONNX: "onnx-fp32",
    RuntimeName.ONNX_INT8: "onnx-int8",
    RuntimeName.ONNX_INT8_STATIC: "onnx-int8-static",
    RuntimeName.TORCH_BF16: "torch-bf16",
    RuntimeName.OPENVINO: "openvino",
    RuntimeName.OPENVINO_INT8: "openvino-int8",
}
NAME_OF_LABEL = {label: name.value for name, label in LABELS.items()}

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


def text_threads(requested: int = 0) -> int:
    """Threads for the text tower: as asked, else two where there are two cores.

    A query is a handful of tokens, but the tower reads its 38 MB of int8 weights (ViT-B-32) for
    each; on two threads that stop spinning when a call ends, a four-token query took 3.9 ms
    against 4.8 on one, beside searches at 100K (2-core Xeon with AMX). A server sets one
    (``lookalike serve``): its concurrent requests already keep the cores busy, and there a
    second thread cost more than it saved (a shared 2-core AVX2 EPYC: 13.6 ms on one, 27.7 on two).
    """
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cores))


class OnnxRuntime:
    """Two ONNX Runtime sessions on the CPU: images on every thread, texts on ``text_threads``.

    Worker threads stop spinning when a call ends, so that the cores go straight to what runs
    between calls (a search, decoding the next images) instead of waiting for work that is not
    coming.
    """

    def __init__(self, image_path: Path, text_path: Path, label: str, texts_on: int = 1) -> None:
        import onnxruntime as ort

        def options(threads: int) -> Any:
            chosen = ort.SessionOptions()
            chosen.intra_op_num_threads = threads
            chosen.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            chosen.add_session_config_entry("session.force_spinning_stop", "1")
            return chosen

        providers = ["CPUExecutionProvider"]
        self.label = label
        self._image = ort.InferenceSession(
            str(image_path), options(torch.get_num_threads()), providers=providers
        )
        self._text = ort.InferenceSession(str(text_path), options(texts_on), providers=providers)

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        return self._image.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        return self._text.run(None, {"tokens": np.ascontiguousarray(tokens, dtype=np.int64)})[0]


class OpenVinoRuntime:
    """Two models compiled by OpenVINO's CPU plugin, in the precision it picks for this CPU.

    On a CPU with AMX or AVX512-BF16 that is bfloat16 on the matrix units (ViT-B-32's image tower
    at batch 32 on a 2-core Xeon with AMX: 114 images/s against PyTorch fp32's 26, cosine 0.99996).
    Compiled models are cached in ``cache`` so that a later process compiles in a fraction of the
    time. An infer request serves one call at a time, so each thread gets its own.
    """

    def __init__(self, image_path: Path, text_path: Path, cache: Path, label: str, texts_on: int = 1) -> None:
        import openvino as ov

        core = ov.Core()
        core.set_property({"CACHE_DIR": str(cache)})

        def compiled(path: Path, threads: int) -> Any:
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
            return core.compile_model(core.read_model(str(path)), "CPU", config)

        self.label = label
        self._image = compiled(image_path, torch.get_num_threads())
        self._text = compiled(text_path, texts_on)  # see text_threads
        self._requests = threading.local()

    def _run(self, tower: str, inputs: Array) -> Array:
        request = getattr(self._requests, tower, None)
        if request is None:
            request = (self._image if tower == "image" else self._text).create_infer_request()
            setattr(self._requests, tower, request)
        return np.array(request.infer({0: inputs})[0], dtype=np.float32, copy=True)

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        return self._run("image", np.ascontiguousarray(pixels, dtype=np.float32))

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        return self._run("text", np.ascontiguousarray(tokens, dtype=np.int64))


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


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


def auto_candidates() -> list[RuntimeName]:
    """The runtimes ``auto`` probes on this CPU (PyTorch fp32, the reference, always runs too)."""
    candidates = [RuntimeName.ONNX_INT8_STATIC, RuntimeName.ONNX_INT8, RuntimeName.ONNX]
    if bf16_is_fast():
        candidates.append(RuntimeName.TORCH_BF16)
    if openvino_installed():
        candidates += [RuntimeName.OPENVINO, RuntimeName.OPENVINO_INT8]
    return candidates


class SplitRuntime:
    """The image tower from one runtime and the text tower from another (each the fastest for its job)."""

    def __init__(self, image: Runtime, text: Runtime, probes: dict[str, dict[str, float]]) -> None:
        self._image, self._text = image, text
        self.label = image.label if image.label == text.label else f"{image.label}+{text.label}"
        self.image_label, self.text_label = image.label, text.label
        self.probes = probes  # what the choice was made on, for `lookalike bench` to report

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


def _build(name: RuntimeName, model: Any, folder: Path | None, device: str, texts_on: int = 1) -> Runtime:
    if name == RuntimeName.TORCH:
        return TorchRuntime(model, device)
    if name == RuntimeName.TORCH_BF16:
        return TorchRuntime(copy.deepcopy(model).to(torch.bfloat16), device, LABELS[name])
    assert folder is not None
    suffix = ONNX_SUFFIX[name]
    if name in (RuntimeName.OPENVINO, RuntimeName.OPENVINO_INT8):
        if not openvino_installed():
            raise ConfigError("The openvino runtime needs OpenVINO: pip install openvino.")
        return OpenVinoRuntime(
            folder / f"image{suffix}.onnx",
            folder / f"text{suffix}.onnx",
            folder / "openvino",
            LABELS[name],
            texts_on,
        )
    return OnnxRuntime(folder / f"image{suffix}.onnx", folder / f"text{suffix}.onnx", LABELS[name], texts_on)


def choose_runtime(
    requested: str,
    model: Any,
    *,
    config: dict[str, Any],
    device: str,
    cache_dir: Path,
    probe_pixels: Array,
    probe_tokens: Array,
    text_threads_wanted: int = 0,
) -> Runtime:
    """Build the runtime asked for (its text tower on ``text_threads(text_threads_wanted)`` threads).

    ``auto`` on a CPU probes every runtime that can run here once per model and machine
    (the result is cached beside the export) and takes, for each tower, the fastest one
    whose vectors agree with PyTorch fp32 to the bar; on a GPU it is PyTorch. The probe
    inputs (photographs, mirrored, and texts) also calibrate static int8.
    """
    name = _resolve(requested)
    texts_on = text_threads(text_threads_wanted)
    torch_runtime = TorchRuntime(model, device)
    if name == RuntimeName.TORCH or (name == RuntimeName.AUTO and device != "cpu"):
        return torch_runtime
    if device != "cpu":
        raise ConfigError(f"The {name.value} runtime runs on the CPU; use --device cpu or --runtime torch.")
    candidates = auto_candidates() if name == RuntimeName.AUTO else [name]
    folder: Path | None = None
    suffixes = tuple(ONNX_SUFFIX[c] for c in candidates if c in ONNX_SUFFIX)
    if suffixes:
        try:
            # Calibrated on the photographs mirrored: the probe then measures int8 on inputs it was
            # not calibrated on.
            calibration = (np.ascontiguousarray(probe_pixels[..., ::-1]), probe_tokens)
            folder = onnx_folder(model, config, cache_dir, suffixes, calibration)
        except Exception as exc:  # an architecture the exporter cannot trace fails in many ways
            if name != RuntimeName.AUTO:
                raise ModelUnavailableError(
                    f"Cannot export the model to ONNX for --runtime {name.value}: {exc}"
                ) from exc
            log.warning("ONNX export failed (%s); trying the PyTorch runtimes only", exc)
            candidates = [c for c in candidates if c not in ONNX_SUFFIX]
    if name != RuntimeName.AUTO:
        try:
            return _build(name, model, folder, device, texts_on)
        except (ConfigError, ModelUnavailableError):
            raise
        except Exception as exc:  # e.g. OpenVINO refusing an operator or this CPU
            raise ModelUnavailableError(
                f"The {name.value} runtime cannot run here: {exc}. Use --runtime auto to take the "
                "fastest one that can."
            ) from exc

    folder_of_probes = folder or cache_dir / "probes" / weights_key(model, config)
    probes_path = folder_of_probes / f"probes-{machine_key()}.json"
    everyone = [RuntimeName.TORCH, *candidates]
    probes = cached_probes(probes_path)
    built: dict[RuntimeName, Runtime] = {RuntimeName.TORCH: torch_runtime}
    if not all(complete(probes.get(c.value, {})) for c in everyone):
        built.update(_build_each(candidates, model, folder, device, texts_on))
        unavailable = [c for c in candidates if c not in built]
        probes = _probed(built, unavailable, probes, probes_path, probe_pixels, probe_tokens)
    everyone = [c for c in everyone if not probes[c.value].get(UNAVAILABLE)]

    def fastest(tower: str) -> RuntimeName:
        passing = [c for c in everyone if passes(c.value, probes[c.value], tower)] or [RuntimeName.TORCH]
        return min(passing, key=lambda candidate: probes[candidate.value][f"{tower}_ms"])

    # Once the probe is cached, only the runtimes chosen are built (an OpenVINO compile, a bfloat16
    # copy of the model and ONNX sessions all cost start-up time); one that no longer builds is left
    # out and the next fastest taken.
    while True:
        image, text = fastest("image"), fastest("text")
        missing = [c for c in dict.fromkeys((image, text)) if c not in built]
        built.update(_build_each(missing, model, folder, device, texts_on))
        if image in built and text in built:
            break
        everyone = [c for c in everyone if c in built or c not in missing]
    runtime = SplitRuntime(built[image], built[text], {c.value: probes[c.value] for c in everyone})
    log.info("runtime %s, chosen from %s", runtime.label, probes)
    return runtime


def _build_each(
    names: Sequence[RuntimeName], model: Any, folder: Path | None, device: str, texts_on: int
) -> dict[RuntimeName, Runtime]:
    """The runtimes that build here; one that cannot (an operator it lacks, a CPU it does not
    support, a cache it cannot write) is left out with a warning, so ``auto`` still answers."""
    built: dict[RuntimeName, Runtime] = {}
    for name in names:
        try:
            built[name] = _build(name, model, folder, device, texts_on)
        except Exception as exc:  # runtimes fail to load in many ways; auto then does without one
            log.warning("the %s runtime cannot run here, leaving it out: %s", LABELS[name], exc)
    return built


def _probed(
    built: dict[RuntimeName, Runtime],
    unavailable: list[RuntimeName],
    probes: dict[str, dict[str, float]],
    path: Path,
    pixels: Array,
    tokens: Array,
) -> dict[str, dict[str, float]]:
    """Probe results for every built runtime: those cached, and the missing ones measured now (and
    cached, with the runtimes that did not build, so that later processes do not try them again)."""
    probes = dict(probes)
    probes.update({c.value: {"probe_version": PROBE_VERSION, UNAVAILABLE: 1.0} for c in unavailable})
    missing = [c for c in built if not complete(probes.get(c.value, {}))]
    if not missing:
        write_probes(path, probes)
        return probes
    started = time.perf_counter()
    log.warning(
        "measuring %s on this CPU: agreement with PyTorch, batch stability and speed "
        "(once per model and machine)",
        ", ".join(LABELS[c] for c in missing),
    )
    reference = built[RuntimeName.TORCH]
    for candidate in missing:
        probes[candidate.value] = measure(reference, built[candidate], pixels, tokens)
    write_probes(path, probes)
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
