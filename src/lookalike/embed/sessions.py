"""One exported tower in ONNX Runtime or OpenVINO, and the runtimes' names: nothing here imports torch.

``runtimes.py`` builds its runtimes from these towers, and a process that runs only one tower of a
model exported before (a text query from the command line) builds that tower alone, with the same
session options, so that both give the same vectors.
"""

from __future__ import annotations

import os
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


class RuntimeName(StrEnum):
    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"
    ONNX_INT8_STATIC = "onnx-int8-static"
    TORCH_BF16 = "torch-bf16"
    OPENVINO = "openvino"
    OPENVINO_INT8 = "openvino-int8"


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
OPENVINO_NAMES = (RuntimeName.OPENVINO, RuntimeName.OPENVINO_INT8)
INPUTS = {"image": ("pixels", np.float32), "text": ("tokens", np.int64)}
"""Each tower's input name in the export, and its dtype."""


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


class OnnxTower:
    """One tower in an ONNX Runtime session on the CPU, on ``threads`` threads that stop spinning when
    a call ends, so that the cores go straight to what runs between calls (a search, decoding)."""

    def __init__(self, path: Path, tower: str, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self._input, self._dtype = INPUTS[tower]
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, inputs: Array) -> Array:
        return self._session.run(None, {self._input: np.ascontiguousarray(inputs, dtype=self._dtype)})[0]


def openvino_core(cache: Path) -> Any:
    """An OpenVINO core that keeps compiled models in ``cache``: a later process compiles in a fraction
    of the time."""
    import openvino as ov

    core = ov.Core()
    core.set_property({"CACHE_DIR": str(cache)})
    return core


class OpenVinoTower:
    """One tower compiled by OpenVINO's CPU plugin (latency hint, ``threads`` threads). An infer request
    serves one call at a time, so each thread gets its own.

    Compiled from the file's path: with a cache, OpenVINO then finds the compiled model by the path
    and the options without reading the ONNX file at all (ViT-B-32's int8 text tower: 0.3 s against
    0.7-1.1 s through ``read_model``). The cache knows a model only by its path; an export's folder
    is named by the digest of its weights, so the file at a path never changes, and a tower loaded
    alone is checked against the full load's vector anyway (``exported.py``).
    """

    def __init__(self, core: Any, path: Path, tower: str, threads: int) -> None:
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        self._compiled = core.compile_model(str(path), "CPU", config)
        self._dtype = INPUTS[tower][1]
        self._requests = threading.local()

    def run(self, inputs: Array) -> Array:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        inputs = np.ascontiguousarray(inputs, dtype=self._dtype)
        return np.array(request.infer({0: inputs})[0], dtype=np.float32, copy=True)


def build_tower(name: RuntimeName, path: Path, tower: str, threads: int) -> OnnxTower | OpenVinoTower:
    """A tower of an export in the runtime named (OpenVINO's compiled models cached beside the export)."""
    if name in OPENVINO_NAMES:
        return OpenVinoTower(openvino_core(path.parent / "openvino"), path, tower, threads)
    return OnnxTower(path, tower, threads)
