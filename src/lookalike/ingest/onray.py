"""Ingest's stages where Ray Data runs them (``index --ray``): list, read, hash and decode as tasks, the
model in an actor pool. The driver's side, which holds the store, is usecases/ray_runner.py.

Rows travel between the stages as four columns: ``status`` (``new``, ``stored`` or ``skipped``),
``meta`` (the pickled listed entry and what became of it, without its bytes), ``pixels`` (a new
picture decoded, as raw RGB at the size the local runner would hand the model's preprocessing)
and, after the actors, ``vector``. The stage functions are pipeline.py's, the same the local runner
calls, so a row gets the same id, the same decode and the same vector either way.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.ingest.parts import Part
from lookalike.ingest.pipeline import IngestPlan, Read, Unit, batches, decode, embed, keep_download, read
from lookalike.ingest.sources import Record, Skipped

NEW, STORED, SKIPPED = "new", "stored", "skipped"
GPU_BATCH = 256  # images per model batch on a GPU when --batch-size is not given (ViT-B-32 fp16)
TASK_CPUS = 0.5  # what one read-and-decode task asks of a node; the actors share the rest


@dataclass(frozen=True)
class Meta:
    """What the driver needs of a row: the listed entry, its read (no bytes), its unit (no inputs)."""

    entry: Record | Skipped
    read: Read | Skipped | None = None
    unit: Unit | Skipped | None = None


def list_chunks(part: Part, size: int) -> Iterator[Any]:
    """The list stage, a task per part (ingest/parts.py): its entries as tables of ``size`` rows, each
    a block of its own for the read tasks, then how many it listed (for the progress bar)."""
    import pyarrow as pa

    listed = 0
    for chunk in batches(part, size):
        listed += len(chunk)
        yield pa.table({"meta": pa.array([pickle.dumps(Meta(entry)) for entry in chunk], pa.binary())})
    yield listed


def _raw(image: Image.Image) -> tuple[str, int, int, bytes]:
    """The decode stage's ``prepare`` here: the picture as raw pixels, preprocessed by the actor."""
    return image.mode, image.width, image.height, image.tobytes()


def read_and_decode(
    batch: dict[str, npt.NDArray[Any]],
    *,
    plan: IngestPlan,
    stored: npt.NDArray[np.int64],
    input_size: int | None,
) -> dict[str, list[Any]]:
    """The task stage: each listed entry read, hashed and, unless its id is ``stored``, decoded."""
    out: dict[str, list[Any]] = {"status": [], "meta": [], "pixels": []}
    for raw in batch["meta"]:
        meta: Meta = pickle.loads(raw)
        status, pixels = SKIPPED, b""
        if isinstance(meta.entry, Record):
            got = read(meta.entry, plan.fetch)
            if isinstance(got, Read):
                position = int(np.searchsorted(stored, got.id))
                if position < len(stored) and stored[position] == got.id:
                    status = STORED  # skipped before decoding: the pre-pass found it stored
                    meta = replace(meta, read=replace(got, data=b""))
                else:
                    status, meta, pixels = _decoded(meta, got, plan, input_size)
            else:
                meta = replace(meta, read=got)
        out["status"].append(status)
        out["meta"].append(pickle.dumps(meta))
        out["pixels"].append(pixels)
    return out


def _decoded(meta: Meta, got: Read, plan: IngestPlan, input_size: int | None) -> tuple[str, Meta, bytes]:
    units = decode(got, plan, _raw, input_size)
    if not isinstance(units, Skipped):
        units = keep_download(got, plan) or units
    light = replace(got, data=b"")
    if isinstance(units, Skipped):
        return NEW, replace(meta, read=light, unit=units), b""
    (unit,) = units  # no detection on Ray: one unit, the whole picture
    mode, width, height, pixels = unit.inputs
    header = f"{mode}:{width}:{height}:".encode()
    return NEW, replace(meta, read=light, unit=replace(unit, read=light, inputs=None)), header + pixels


def _image(pixels: bytes) -> Image.Image:
    mode, width, height, data = pixels.split(b":", 3)
    return Image.frombytes(mode.decode(), (int(width), int(height)), data)


class EmbedActor:
    """One model per actor: built from the driver's settings (device and batch size chosen for the node)."""

    def __init__(self, settings: Any, threads: int = 0) -> None:
        from lookalike.embed import create_embedder

        if threads:  # Ray gives an actor of 1.5 CPUs one OpenMP thread; it may use the cores it holds
            import torch

            torch.set_num_threads(threads)
        self.embedder = create_embedder(settings)
        self.dim = self.embedder.dim
        self.problem = ""  # why the model did not load: each batch says so, the driver stops the run
        try:
            self.embedder.load_image()
        except Exception as exc:  # a dead actor would only say "SystemException"; the driver says why
            lines = str(exc).strip().splitlines()
            self.problem = f"{type(exc).__name__}: {lines[0] if lines else ''}"

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, Any]:
        if self.problem:
            size = len(batch["meta"])
            return {
                "status": batch["status"],
                "meta": batch["meta"],
                "vector": np.zeros((size, self.dim), dtype=np.float32),
                "usable": np.zeros(size, dtype=bool),
                "problem": [self.problem] * size,
            }
        todo = [i for i, pixels in enumerate(batch["pixels"]) if len(pixels)]
        vectors = np.zeros((len(batch["meta"]), self.dim), dtype=np.float32)
        usable = np.zeros(len(batch["meta"]), dtype=bool)
        units: list[Unit] = []
        for i in todo:
            unit = pickle.loads(batch["meta"][i]).unit
            inputs = self.embedder.prepare_image(_image(bytes(batch["pixels"][i])))
            units.append(replace(unit, inputs=inputs))
        for i, vector in zip(todo, embed(units, self.embedder.embed_prepared), strict=True):
            if vector is not None:
                vectors[i], usable[i] = vector, True
        problem = [""] * len(batch["meta"])
        return {
            "status": batch["status"],
            "meta": batch["meta"],
            "vector": vectors,
            "usable": usable,
            "problem": problem,
        }
