"""What a process needs to run one tower of a model exported before, without torch or open_clip.

Loading the whole model (open_clip builds it in PyTorch, ``choose_runtime`` exports and probes, then
picks a runtime per tower) ends by writing a manifest: for each tower the runtime and the export file
it chose and the threads it runs on; the text tower's trimming, the image preprocessing, the logit
scale, and two check vectors (a fixed text and a fixed photograph, as the full load embedded them). A
later process finds the manifest by the model's identity (its architecture config, its weights: a
checkpoint's SHA-256, a tag, or seeded random weights; the versions of the libraries that built,
exported and feed it; the runtime and device asked for) and by this machine (CPU, cores, thread
settings, a GPU), all known without importing torch, and runs the tower it needs from the file the
full load chose, with the same session options: the same vectors, in a fraction of the time.

A manifest is used only while every file it names is the one it was written with (size, modification
and change times, inode) and while the tower, fed by this process's own tokenizer or preprocessing,
gives its check vector again (cosine ≥ ``CHECK_BAR``). Anything it cannot vouch for (another model,
machine or library version, a file changed, damaged or gone, a damaged manifest) sends the process
down the full load, which writes the manifest again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike import durable
from lookalike.embed.imageprep import ImagePrep
from lookalike.embed.sessions import LABELS, NAME_OF_LABEL, OnnxTower, OpenVinoTower, RuntimeName, build_tower

MANIFEST_VERSION = 3  # 2: check vectors; files known by inode and change time too; 3: ASCII check text
EXPORT_VERSION = 2  # 2: static int8 quantises the attention output projections (Gemm) too
"""The export code's version, part of each export's cache key (``export.weights_key``)."""
PACKAGES = ("torch", "open_clip_torch", "onnxruntime", "openvino", "pillow", "ftfy", "regex", "numpy")
"""The libraries whose versions a manifest was written under: the model's build and export, the
runtimes, and what tokenizes and preprocesses without torch."""
RANDOM_WEIGHTS = frozenset({"random", "none"})
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
CHECK_TEXT = "A photo of a Red floral dress: it's 2 for $5!"
"""Embedded by the full load and again by a tower loaded alone. Printable ASCII, as most queries are,
so that the check does not import ftfy for them (non-ASCII text, HTML entities and control characters
are held to open_clip's token ids by tests/unit/test_tokenizer.py, and a query with them imports ftfy
itself); cased, a contraction, digits and punctuation exercise the tokenizer's pattern."""
CHECK_BAR = 0.9999
_REQUIRED = ("embed_dim", "vision_cfg", "text_cfg")
_PREPROCESS_KEYS = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}
Array = npt.NDArray[Any]


def architecture(model: str) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """The architecture name open_clip gives a model, its config and the preprocessing it names, read
    from the config file (a model-config JSON, or one of open_clip's built-in ones) without importing
    open_clip; None where only open_clip can tell (a hub name, a config it does not ship, a bad file).
    """
    path = Path(model).expanduser()
    if model.endswith(".json") or path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
        if not isinstance(cfg, dict) or not set(_REQUIRED) <= cfg.keys():
            return None
        preprocess = data.get("preprocess_cfg", {}) if isinstance(data, dict) else {}
        if not isinstance(preprocess, dict):
            return None
        kwargs = {kw: preprocess[k] for k, kw in _PREPROCESS_KEYS.items() if preprocess.get(k) is not None}
        return f"lookalike-{path.stem}", cfg, kwargs
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations or "/" in model or ":" in model:
        return None
    builtin = Path(next(iter(spec.submodule_search_locations))) / "model_configs" / f"{model}.json"
    try:
        cfg = json.loads(builtin.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return (model, cfg, {}) if isinstance(cfg, dict) and set(_REQUIRED) <= cfg.keys() else None


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[str, ...]:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return ""

    return tuple(f"{p} {version(p)}" for p in PACKAGES)


def weights_identity(pretrained: str, cache_dir: Path) -> str | None:
    """What names the weights: a checkpoint's SHA-256, a tag, or seeded random weights; None for a path
    that is not a file (the full load explains that)."""
    from lookalike.embed.checkpoints import file_sha256

    value = pretrained.strip()
    if not value or value.lower() in RANDOM_WEIGHTS:
        return "random"  # seeded: the same in every process of the same library versions
    path = Path(value).expanduser()
    if path.is_file():
        return "sha256:" + file_sha256(path, cache_dir)
    if "/" in value or "\\" in value or value.endswith(CHECKPOINT_SUFFIXES):
        return None
    return "tag:" + value


def identity(model: str, pretrained: str, runtime: str, device: str, cache_dir: Path) -> str | None:
    """The digest a manifest of this model, weights, runtime and device choice is kept under; None where
    it cannot be known without open_clip."""
    arch = architecture(model)
    weights = weights_identity(pretrained, cache_dir)
    if arch is None or weights is None:
        return None
    name, cfg, kwargs = arch
    described = [name, cfg, kwargs, weights, runtime, device, EXPORT_VERSION, MANIFEST_VERSION, _versions()]
    return hashlib.blake2b(json.dumps(described, sort_keys=True).encode(), digest_size=12).hexdigest()


def machine() -> str:
    """A digest of what a runtime's choice and threads depend on here, known without torch: the CPU,
    its extensions, the cores this process may use, the thread settings, a GPU."""
    from lookalike.embed.probe import cpu_info

    model, flags = cpu_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = [os.environ.get(name, "") for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")]
    gpu = any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd"))
    described = [platform.machine(), model, " ".join(sorted(flags)), str(cores), *threads, str(gpu)]
    return hashlib.blake2b("\n".join(described).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class Stamp:
    """What a file was when the manifest was written: any write or replacement changes its change time
    or its inode, whatever its modification time is set back to."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    def current(self) -> bool:
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return self == Stamp.of(Path(self.path), stat)

    @classmethod
    def of(cls, path: Path, stat: os.stat_result | None = None) -> Stamp:
        stat = stat or os.stat(path)
        return cls(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


@dataclass(frozen=True)
class Tower:
    """One tower's runtime (a label, as ``runtime_choice`` names it), export file and threads, and the
    stamps of the file and of its external weights (``text.onnx.data``, where the exporter wrote one)."""

    runtime: str
    path: str
    threads: int
    stamps: tuple[Stamp, ...]

    def current(self) -> bool:
        """Whether the files are still the ones the manifest was written for."""
        return bool(self.stamps) and all(stamp.current() for stamp in self.stamps)

    def build(self, tower: str, threads: int | None = None) -> OnnxTower | OpenVinoTower:
        name = RuntimeName(NAME_OF_LABEL[self.runtime])
        return build_tower(name, Path(self.path), tower, threads or self.threads)

    @classmethod
    def of(cls, name: RuntimeName, path: Path, threads: int) -> Tower:
        files = [path] + [p for p in (path.with_name(path.name + ".data"),) if p.is_file()]
        return cls(LABELS[name], str(path), int(threads), tuple(Stamp.of(p) for p in files))

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "stamps": [vars(stamp) for stamp in self.stamps]}


@dataclass(frozen=True)
class Exported:
    """The manifest of one model on one machine (a tower that runs in PyTorch is None)."""

    text: Tower | None
    image: Tower | None
    trim: tuple[str, int | None] | None
    prep: ImagePrep | None
    logit_scale: float
    text_check: tuple[float, ...] = ()
    image_check: tuple[float, ...] = ()

    def to_json(self) -> str:
        towers = {k: t.to_dict() if t else None for k, t in (("text", self.text), ("image", self.image))}
        return json.dumps(
            {
                "version": MANIFEST_VERSION,
                **towers,
                "trim": list(self.trim) if self.trim else None,
                "prep": self.prep.to_dict() if self.prep else None,
                "logit_scale": self.logit_scale,
                "text_check": list(self.text_check),
                "image_check": list(self.image_check),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Exported | None:
        try:
            data = json.loads(text)
            if data["version"] != MANIFEST_VERSION:
                return None
            towers = {k: _tower(data[k]) for k in ("text", "image")}
            trim = data["trim"]
            checks = {k: tuple(float(v) for v in data[k]) for k in ("text_check", "image_check")}
            return cls(
                text=towers["text"],
                image=towers["image"],
                trim=(str(trim[0]), None if trim[1] is None else int(trim[1])) if trim else None,
                prep=ImagePrep.from_dict(data["prep"]) if data["prep"] else None,
                logit_scale=float(data["logit_scale"]),
                **checks,
            )
        except (ValueError, KeyError, TypeError, IndexError):
            return None


def _tower(data: Any) -> Tower | None:
    if data is None:
        return None
    stamps = tuple(
        Stamp(str(d["path"]), int(d["size"]), int(d["mtime_ns"]), int(d["ctime_ns"]), int(d["inode"]))
        for d in data["stamps"]
    )
    tower = Tower(str(data["runtime"]), str(data["path"]), int(data["threads"]), stamps)
    if tower.runtime not in NAME_OF_LABEL or tower.runtime == LABELS[RuntimeName.TORCH]:
        raise ValueError(f"not an exported runtime: {tower.runtime}")
    return tower


def manifest_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "towers" / f"{key}-{machine()}.json"


def read(cache_dir: Path, key: str) -> Exported | None:
    """The manifest for this model here, if every file it names is unchanged."""
    path = manifest_path(cache_dir, key)
    if not path.is_file():  # missing, or a FIFO put there: reading it could hang
        return None
    try:
        found = Exported.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    if found is None or not all(t.current() for t in (found.text, found.image) if t is not None):
        return None
    return found


def write(cache_dir: Path, key: str, exported: Exported) -> None:
    """Keep the manifest (durably; a cache that cannot be written only costs later processes time)."""
    with contextlib.suppress(OSError):
        durable.write_text(manifest_path(cache_dir, key), exported.to_json(), step="towers")


def check_vector(features: Array) -> tuple[float, ...]:
    """A check vector as a manifest keeps it: the first row, normalised."""
    row = np.asarray(features, dtype=np.float64)[0]
    norm = float(np.linalg.norm(row))
    return tuple(float(v) for v in (row / norm if norm > 0 else row))


def vouched(features: Array, expected: tuple[float, ...]) -> bool:
    """Whether a tower loaded alone gave the full load's check vector again."""
    got = np.asarray(check_vector(features))
    want = np.asarray(expected, dtype=np.float64)
    return got.shape == want.shape and bool(got @ want >= CHECK_BAR)


def text_alone(
    found: Exported, tokenizer: Callable[[Sequence[str]], Array], threads: int
) -> Callable[[Array], Array] | None:
    """The text tower alone, if, fed by ``tokenizer``, it gives the full load's check vector again."""
    from lookalike.embed.tokenizer import trim_tokens

    if found.text is None or not found.text_check:
        return None
    run = found.text.build("text", threads).run
    tokens = np.asarray(tokenizer([CHECK_TEXT]), dtype=np.int64)
    if found.trim is not None:
        tokens = trim_tokens(tokens, *found.trim)
    return run if vouched(run(tokens), found.text_check) else None


def image_alone(found: Exported) -> Callable[[Array], Array] | None:
    """The image tower alone, if, fed by the torch-free preprocessing, it gives the full load's check
    vector again."""
    from lookalike.embed.probe import probe_photos

    if found.image is None or found.prep is None or not found.image_check:
        return None
    run = found.image.build("image").run
    return run if vouched(run(found.prep(probe_photos(1)[0])[None]), found.image_check) else None
