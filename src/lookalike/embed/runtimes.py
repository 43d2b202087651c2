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

import contextlib
import copy
import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from lookalike.embed import progress
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
from lookalike.embed.sessions import (
    LABELS,
    NAME_OF_LABEL,
    OnnxTower,
    OpenVinoTower,
    RuntimeName,
    openvino_core,
    text_threads,
)
from lookalike.embed.towers import ImageTower, text_tower
from lookalike.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)


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
Array = npt.NDArray[Any]


class Runtime(Protocol):
    label: str

    def images(self, pixels: npt.NDArray[np.float32]) -> Array: ...

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array: ...


GPU_AUTOCAST = torch.float16
"""What ``auto`` runs a model on a GPU in: fp16 autocast (matrix products in half precision on the tensor
cores, normalisations and softmax in fp32), about twice fp32's images/s for ViT-B-32."""
GPU_AUTOCAST_LABEL = "torch-fp16-autocast"


class TorchRuntime:
    """open_clip's own modules, on the model's device, in the model's dtype (or under ``autocast``)."""

    def __init__(
        self,
        model: Any,
        device: str,
        label: str = LABELS[RuntimeName.TORCH],
        autocast: torch.dtype | None = None,
    ) -> None:
        self.label = label
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.autocast = autocast
        self._image = ImageTower(model)
        self._text = text_tower(model)
        self._model = model

    def _mode(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=self.autocast)

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        with torch.inference_mode(), self._mode():
            features = self._image(torch.from_numpy(pixels).to(self.device, self.dtype))
        return features.float().cpu().numpy()

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        with torch.inference_mode(), self._mode():
            batch = torch.from_numpy(tokens).to(self.device)
            features = self._text(batch) if self._text is not None else self._model.encode_text(batch)
        return features.float().cpu().numpy()


class OnnxRuntime:
    """Two ONNX Runtime sessions on the CPU: images on every thread, texts on ``text_threads``
    (see ``sessions.OnnxTower``)."""

    def __init__(self, image_path: Path, text_path: Path, label: str, texts_on: int = 1) -> None:
        self.label = label
        self.paths = {"image": image_path, "text": text_path}
        self.threads = {"image": torch.get_num_threads(), "text": texts_on}
        self._image = OnnxTower(image_path, "image", self.threads["image"])
        self._text = OnnxTower(text_path, "text", texts_on)

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        return self._image.run(pixels)

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        return self._text.run(tokens)


class OpenVinoRuntime:
    """Two models compiled by OpenVINO's CPU plugin, in the precision it picks for this CPU.

    On a CPU with AMX or AVX512-BF16 that is bfloat16 on the matrix units (ViT-B-32's image tower
    at batch 32 on a 2-core Xeon with AMX: 114 images/s against PyTorch fp32's 26, cosine 0.99996).
    Compiled models are cached in ``cache`` so that a later process compiles in a fraction of the
    time (see ``sessions.OpenVinoTower``).
    """

    def __init__(self, image_path: Path, text_path: Path, cache: Path, label: str, texts_on: int = 1) -> None:
        core = openvino_core(cache)
        self.label = label
        self.paths = {"image": image_path, "text": text_path}
        self.threads = {"image": torch.get_num_threads(), "text": texts_on}
        self._image = OpenVinoTower(core, image_path, "image", self.threads["image"])
        self._text = OpenVinoTower(core, text_path, "text", texts_on)  # see text_threads

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        return self._image.run(pixels)

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        return self._text.run(tokens)


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
        self.image_part, self.text_part = image, text
        self.label = image.label if image.label == text.label else f"{image.label}+{text.label}"
        self.image_label, self.text_label = image.label, text.label
        self.probes = probes  # what the choice was made on, for `lookalike bench` to report

    def images(self, pixels: npt.NDArray[np.float32]) -> Array:
        return self._image.images(pixels)

    def texts(self, tokens: npt.NDArray[np.int64]) -> Array:
        return self._text.texts(tokens)


def exported_towers(runtime: Runtime) -> dict[str, tuple[RuntimeName, Path, int]]:
    """For each tower that runs from an export: its runtime, its export file and its threads."""
    parts: dict[str, Any] = {"image": runtime, "text": runtime}
    if isinstance(runtime, SplitRuntime):
        parts = {"image": runtime.image_part, "text": runtime.text_part}
    found = {}
    for tower, part in parts.items():
        if isinstance(part, OnnxRuntime | OpenVinoRuntime):
            found[tower] = (RuntimeName(NAME_OF_LABEL[part.label]), part.paths[tower], part.threads[tower])
    return found


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
    probe_later: Callable[[], bool] | None = None,
) -> Runtime:
    """Build the runtime asked for (its text tower on ``text_threads(text_threads_wanted)`` threads).

    ``auto`` on a CPU probes every runtime that can run here once per model and machine
    (the result is cached beside the export) and takes, for each tower, the fastest one
    whose vectors agree with PyTorch fp32 to the bar; on a GPU it is PyTorch under fp16 autocast. The probe
    inputs (photographs, mirrored, and texts) also calibrate static int8. With ``probe_later``,
    a model not yet probed here runs on PyTorch fp32 (the reference: right by definition, and
    nothing to export) where ``probe_later`` takes the export and the probe elsewhere (a background
    process; it returns whether it did), so that the first command answers at once.
    """
    name = _resolve(requested)
    texts_on = text_threads(text_threads_wanted)
    torch_runtime = TorchRuntime(model, device)
    if name == RuntimeName.AUTO and device != "cpu":
        return TorchRuntime(model, device, GPU_AUTOCAST_LABEL, autocast=GPU_AUTOCAST)
    if name == RuntimeName.TORCH:
        return torch_runtime
    if device != "cpu":
        raise ConfigError(f"The {name.value} runtime runs on the CPU; use --device cpu or --runtime torch.")
    candidates = auto_candidates() if name == RuntimeName.AUTO else [name]
    key = weights_key(model, config)
    if name == RuntimeName.AUTO and probe_later is not None:
        probes = cached_probes(_probes_path(cache_dir, key))
        probed = all(complete(probes.get(c.value, {})) for c in [RuntimeName.TORCH, *candidates])
        if not probed and probe_later():
            return torch_runtime
    folder: Path | None = None
    not_exported: list[RuntimeName] = []
    suffixes = tuple(ONNX_SUFFIX[c] for c in candidates if c in ONNX_SUFFIX)
    if suffixes:
        try:
            # Calibrated on the photographs mirrored: the probe then measures int8 on inputs it was
            # not calibrated on.
            calibration = (np.ascontiguousarray(probe_pixels[..., ::-1]), probe_tokens)
            folder = onnx_folder(model, config, cache_dir, suffixes, calibration, key=key)
        except Exception as exc:  # an architecture the exporter cannot trace fails in many ways
            if name != RuntimeName.AUTO:
                raise ModelUnavailableError(
                    f"Cannot export the model to ONNX for --runtime {name.value}: {exc}"
                ) from exc
            log.warning("ONNX export failed (%s); trying the PyTorch runtimes only", exc)
            not_exported = [c for c in candidates if c in ONNX_SUFFIX]
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

    probes_path = _probes_path(cache_dir, key)
    everyone = [RuntimeName.TORCH, *candidates]
    probes = cached_probes(probes_path)
    built: dict[RuntimeName, Runtime] = {RuntimeName.TORCH: torch_runtime}
    if not all(complete(probes.get(c.value, {})) for c in everyone):
        built.update(_build_each(candidates, model, folder, device, texts_on, announce=True))
        # Those that did not build (or export) are recorded too, so that no later process tries again.
        unavailable = [c for c in candidates if c not in built] + not_exported
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


def _probes_path(cache_dir: Path, key: str) -> Path:
    """Where the probe of these weights on this machine is kept: beside the export, or (for a model
    that could not be exported) in a folder of its own."""
    exported = cache_dir / "onnx" / key
    folder = exported if exported.is_dir() else cache_dir / "probes" / key
    return folder / f"probes-{machine_key()}.json"


def _build_each(
    names: Sequence[RuntimeName],
    model: Any,
    folder: Path | None,
    device: str,
    texts_on: int,
    *,
    announce: bool = False,
) -> dict[RuntimeName, Runtime]:
    """The runtimes that build here; one that cannot (an operator it lacks, a CPU it does not
    support, a cache it cannot write) is left out with a warning, so ``auto`` still answers.
    ``announce``: say what is being built (the probe builds every runtime; OpenVINO compiles)."""
    built: dict[RuntimeName, Runtime] = {}
    for name in names:
        saying = progress.step(f"preparing {LABELS[name]}") if announce else contextlib.nullcontext()
        try:
            with saying:
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
    for i, candidate in enumerate(missing, start=1):
        with progress.step(
            f"measuring {LABELS[candidate]} ({i}/{len(missing)}): agreement, batch stability, speed"
        ):
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
