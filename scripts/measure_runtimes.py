"""The image tower on every CPU runtime lookalike ships or tried, side by side in one run.

    python scripts/measure_runtimes.py [--model ViT-B-32] [--pretrained random] [--openvino]

For each: images/s at batch 32, the lowest cosine with PyTorch fp32 over the package's photographs,
and batch stability (each photograph alone against inside a batch of 32 others). lookalike's own
runtimes come from its cached export (``embed/export.py``), OpenVINO's included (fp32 in the plugin's
own precision, and the static int8 export); ``--openvino`` adds OpenVINO fp32 held to fp32 and OpenVINO
int8 by NNCF post-training quantisation calibrated on the same photographs (``pip install -e
'.[openvino]'`` for NNCF; not kept: see README "Benchmark").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Encode = Callable[[np.ndarray], np.ndarray]


def lowest_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def measure(label: str, encode: Encode, pixels: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    from lookalike.embed.probe import batch_mates

    batch = np.concatenate([pixels, batch_mates(pixels)])[:32]
    encode(batch)  # warm-up
    started = time.perf_counter()
    encode(batch)
    images_per_s = len(batch) / (time.perf_counter() - started)
    alone = np.concatenate([encode(pixels[i : i + 1]) for i in range(len(pixels))])
    together = encode(np.concatenate([pixels, batch_mates(pixels)]))[: len(pixels)]
    row = {
        "runtime": label,
        "images_per_s": round(images_per_s, 2),
        "agreement_min_cosine": round(lowest_cosine(reference, encode(pixels)), 5),
        "batch_min_cosine": round(lowest_cosine(alone, together), 6),
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(
        f"{label:>18}: {row['images_per_s']:6.2f} images/s, cosine with torch-fp32 ≥ "
        f"{row['agreement_min_cosine']}, alone vs batch ≥ {row['batch_min_cosine']}, load {row['load_average']}",
        flush=True,
    )
    return row


def onnx_session(path: Path) -> Encode:
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"pixels": np.ascontiguousarray(x, dtype=np.float32)})[0]


def openvino_runtimes(path: Path, calibration: np.ndarray) -> dict[str, Encode]:
    import nncf
    import openvino as ov
    import torch

    core = ov.Core()
    model = core.read_model(str(path))
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    quantised = nncf.quantize(
        model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
    )

    def compiled(m: Any) -> Encode:
        config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
        request = core.compile_model(m, "CPU", config).create_infer_request()
        return lambda x: request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})[0].copy()

    return {"openvino-fp32 (held to fp32)": compiled(model), "openvino-int8 (nncf)": compiled(quantised)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "lookalike-measure"))
    parser.add_argument("--openvino", action="store_true", help="add OpenVINO fp32 and NNCF int8")
    args = parser.parse_args()

    from lookalike.bench import cpu_extensions, cpu_model
    from lookalike.embed.export import DYNAMIC_INT8, FP32, STATIC_INT8
    from lookalike.embed.openclip import OpenClipEmbedder
    from lookalike.embed.probe import probe_photos
    from lookalike.embed.runtimes import TorchRuntime

    has = ", ".join(name for name, present in cpu_extensions().items() if present)
    print(f"{cpu_model()} ({len(os.sched_getaffinity(0))} CPUs; {has}), {args.model}")
    embedder = OpenClipEmbedder(args.model, args.pretrained, runtime="onnx-int8", cache_dir=args.cache_dir)
    embedder.load()
    OpenClipEmbedder(args.model, args.pretrained, runtime="onnx-int8-static", cache_dir=args.cache_dir).load()
    pixels = np.stack([embedder.prepare_image(photo) for photo in probe_photos()])
    folder = next(p for p in (Path(args.cache_dir) / "onnx").iterdir() if (p / "image-int8s.onnx").exists())
    from lookalike.embed.openclip import load_open_clip

    torch_runtime = TorchRuntime(load_open_clip(args.model, args.pretrained, "cpu").model, "cpu")
    reference = torch_runtime.images(pixels)
    encoders: dict[str, Encode] = {"torch-fp32": torch_runtime.images}
    for label, suffix in (
        ("onnx-fp32", FP32),
        ("onnx-int8", DYNAMIC_INT8),
        ("onnx-int8-static", STATIC_INT8),
    ):
        encoders[label] = onnx_session(folder / f"image{suffix}.onnx")
    from lookalike.embed.runtimes import OpenVinoRuntime

    for label, suffix in (("openvino", FP32), ("openvino-int8", STATIC_INT8)):
        runtime = OpenVinoRuntime(
            folder / f"image{suffix}.onnx", folder / f"text{suffix}.onnx", folder / "openvino", label
        )
        encoders[label] = runtime.images
    if args.openvino:
        encoders.update(openvino_runtimes(folder / "image.onnx", np.ascontiguousarray(pixels[..., ::-1])))
    rows = [measure(label, encode, pixels, reference) for label, encode in encoders.items()]
    base = rows[0]["images_per_s"]
    print(
        "speed-up over torch-fp32: "
        + ", ".join(f"{r['runtime']} ×{r['images_per_s'] / base:.2f}" for r in rows)
    )


if __name__ == "__main__":
    main()
