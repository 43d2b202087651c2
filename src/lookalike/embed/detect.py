"""Object detection before embedding: boxes from a torchvision detector, clipped, filtered and cropped.

A shopper's street photo shows a person in a jacket; the shop wants the jacket. Each box a
detector proposes above a confidence and a minimum size becomes its own crop to embed.
The detectors are torchvision's (BSD-3-Clause code, COCO-trained weights); ultralytics YOLO
is AGPL-3.0, which obliges a shop serving it over a network to publish its source.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from lookalike.embed.base import RANDOM_WEIGHTS, resolve_device, shape_problem
from lookalike.embed.weights import hub_offline, reachable
from lookalike.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"
DETECTORS = (
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "ssdlite320_mobilenet_v3_large",
)
DEFAULT_WEIGHTS = "default"
"""The detector's COCO weights through torchvision's normal download (cached under TORCH_HOME)."""
WEIGHTS_OPTION = "--detector-weights FILE (or LOOKALIKE_DETECTOR_WEIGHTS)"

Box = tuple[int, int, int, int]
"""x0, y0, x1, y1 in pixels of the image; x1 and y1 exclusive."""


@dataclass(frozen=True)
class Detection:
    """One proposed object: where (pixels of the original image), what, and how sure."""

    box: Box
    label: str
    score: float

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


class Detector(Protocol):
    name: str

    def load(self) -> None:
        """Load the weights now (a missing file is an error before any work starts)."""
        ...

    def detect(self, image: Image.Image) -> list[Detection]:
        """Boxes above the confidence and size limits, most confident first."""
        ...


def clip_box(box: Sequence[float], width: int, height: int) -> Box | None:
    """Round a box to whole pixels inside the image; None when nothing of it is left."""
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def select_detections(
    raw: Iterable[tuple[Sequence[float], str, float]],
    width: int,
    height: int,
    *,
    min_score: float = 0.25,
    min_size: int = 32,
    max_boxes: int = 10,
) -> list[Detection]:
    """Clip boxes to the image, drop the unsure, the tiny (a side under ``min_size``) and the sliver
    (over ``MAX_ASPECT_RATIO``, which the model's resize would blow up), keep the best."""
    kept = []
    for box, label, score in raw:
        clipped = clip_box(box, width, height)
        if clipped is None or score < min_score:
            continue
        x0, y0, x1, y1 = clipped
        if min(x1 - x0, y1 - y0) < min_size or shape_problem(x1 - x0, y1 - y0) is not None:
            continue
        kept.append(Detection(clipped, label, float(score)))
    kept.sort(key=lambda d: (-d.score, d.box))
    return kept[:max_boxes]


def largest(detections: Sequence[Detection]) -> Detection | None:
    return max(detections, key=lambda d: (d.area, d.score), default=None)


def crop(image: Image.Image, box: Box) -> Image.Image:
    """The box's pixels, with a box clipped to the image first; a sliver no model can take is refused."""
    clipped = clip_box(box, image.width, image.height)
    shown = ",".join(map(str, box))
    if clipped is None:
        raise ConfigError(f"The box {shown} lies outside the {image.width}×{image.height} image.")
    x0, y0, x1, y1 = clipped
    problem = shape_problem(x1 - x0, y1 - y0)
    if problem is not None:
        raise ConfigError(f"The box {shown} cannot be searched: {problem}.")
    return image.crop(clipped)


def _cached_weights(url: str) -> Path | None:
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    return path if path.is_file() else None


class TorchvisionDetector:
    """A torchvision detection model; COCO weights by download, a local weights file, or random."""

    def __init__(
        self,
        name: str = DEFAULT_DETECTOR,
        weights: str = DEFAULT_WEIGHTS,
        *,
        device: str = "auto",
        min_score: float = 0.25,
        min_size: int = 32,
        max_boxes: int = 10,
    ) -> None:
        if name not in DETECTORS:
            raise ConfigError(f"Unknown detector '{name}'. Known: {', '.join(DETECTORS)}.")
        if not 0.0 <= min_score <= 1.0 or min_size < 1 or max_boxes < 1:
            raise ConfigError("--min-score must be in [0, 1], the minimum box size and box count at least 1.")
        self.name = name
        self.weights = weights
        self.min_score = min_score
        self.min_size = min_size
        self.max_boxes = max_boxes
        self._device_pref = device
        self._model: Any = None
        self._categories: list[str] = []
        self._lock = threading.Lock()
        self.device = "cpu"

    def _build(self) -> tuple[Any, list[str]]:
        import torch
        from torchvision.models import detection, get_model_weights

        builder = getattr(detection, self.name)
        coco = get_model_weights(builder).DEFAULT
        categories = list(coco.meta["categories"])
        # Low-confidence proposals must reach select_detections, which applies --min-score.
        threshold = min(self.min_score, 0.05)
        options = (
            {"score_thresh": threshold} if self.name.startswith("ssd") else {"box_score_thresh": threshold}
        )
        value = self.weights.strip()
        if value.lower() == DEFAULT_WEIGHTS:
            if _cached_weights(coco.url) is None and (hub_offline() or not reachable(coco.url)):
                raise ModelUnavailableError(
                    f"The {self.name} detector's COCO weights are not cached and cannot be downloaded "
                    f"({coco.url}). Download that file on a machine that is online and pass it with "
                    f"{WEIGHTS_OPTION}, or copy it into {Path(torch.hub.get_dir()) / 'checkpoints'}."
                )
            return builder(weights=coco, weights_backbone=None, **options), categories
        if value.lower() in RANDOM_WEIGHTS:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return builder(
                    weights=None, weights_backbone=None, num_classes=len(categories), **options
                ), categories
        path = Path(value).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(
                f"The detector weights file {path} does not exist. {WEIGHTS_OPTION} takes a local .pth of "
                f"{self.name} (torchvision's COCO file or your own training), 'default' to download, or 'random'."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, dict) else state
            head = state.get("roi_heads.box_predictor.cls_score.weight")
            classes = int(head.shape[0]) if head is not None else len(categories)
            model = builder(weights=None, weights_backbone=None, num_classes=classes, **options)
            model.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, OSError, AttributeError) as exc:
            raise ModelUnavailableError(
                f"The detector weights {path} do not fit {self.name}: {str(exc).splitlines()[0]}"
            ) from exc
        if classes != len(categories):
            categories = [f"class {i}" for i in range(classes)]
        return model, categories

    def load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                device = resolve_device(self._device_pref)
                model, self._categories = self._build()
                self.device = device
                self._model = model.eval().to(device)
                log.info("loaded detector %s (%s) on %s", self.name, self.weights, device)

    def detect(self, image: Image.Image) -> list[Detection]:
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        self.load()
        pixels = pil_to_tensor(image.convert("RGB")).float().div(255).to(self.device)
        with torch.inference_mode():
            found = self._model([pixels])[0]
        raw = [
            (box.tolist(), self._label(int(label)), float(score))
            for box, label, score in zip(found["boxes"], found["labels"], found["scores"], strict=True)
        ]
        return select_detections(
            raw,
            image.width,
            image.height,
            min_score=self.min_score,
            min_size=self.min_size,
            max_boxes=self.max_boxes,
        )

    def _label(self, index: int) -> str:
        return self._categories[index] if 0 <= index < len(self._categories) else f"class {index}"
