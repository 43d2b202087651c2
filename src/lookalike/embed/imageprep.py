"""open_clip's image preprocessing for inference, in PIL and numpy: the same pixels without torch.

open_clip preprocesses a picture for its image tower with torchvision: resize (the shortest side, or
both sides for ``squash``), centre crop, RGB, to float, normalise. ``describe`` reads those steps from
the transform open_clip built, and ``ImagePrep`` repeats them with PIL's own resize (what torchvision
calls for a PIL image) and numpy's float32 arithmetic, so a process that runs only the exported image
tower gives it the same input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class ImagePrep:
    """Resize to ``size`` (shortest side; both sides when ``squash``), centre-crop to ``crop``, RGB,
    scale to [0, 1], normalise by ``mean`` and ``std``; a (3, crop, crop) float32 array."""

    size: int
    crop: int | None
    squash: bool
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> npt.NDArray[np.float32]:
        width, height = image.size
        if self.squash:
            new_w, new_h = self.size, self.size
        else:  # torchvision's Resize(int): the shortest side to size, the other in proportion (floored)
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = self.size, int(self.size * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), RESAMPLING[self.interpolation])
        if self.crop is not None:
            top = int(round((new_h - self.crop) / 2.0))
            left = int(round((new_w - self.crop) / 2.0))
            image = image.crop((left, top, left + self.crop, top + self.crop))
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
        scaled = pixels.astype(np.float32) / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return np.ascontiguousarray((scaled - mean) / std, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ImagePrep | None:
        """The preprocessing a manifest recorded; None for anything else."""
        try:
            prep = cls(
                size=int(data["size"]),
                crop=None if data["crop"] is None else int(data["crop"]),
                squash=bool(data["squash"]),
                interpolation=str(data["interpolation"]),
                mean=(float(data["mean"][0]), float(data["mean"][1]), float(data["mean"][2])),
                std=(float(data["std"][0]), float(data["std"][1]), float(data["std"][2])),
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        ok = prep.interpolation in RESAMPLING and prep.size > 0 and (prep.crop is None) == prep.squash
        return prep if ok and (prep.crop is None or prep.crop <= prep.size) else None


def describe(transform: Any) -> ImagePrep | None:
    """The steps of open_clip's inference transform as an ``ImagePrep``; None when they are any other
    (padding, keeping the ratio, a tensor pipeline): then only open_clip's transform gives the input."""
    steps = list(getattr(transform, "transforms", ()))
    names = [type(step).__name__ for step in steps]
    if names == ["Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor", "Normalize"]:
        resize, crop, mode, _, normalize = steps
        size = resize.size if isinstance(resize.size, int) else None
        if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1:
            size = int(resize.size[0])
        crop_size = tuple(crop.size)
        if size is None or len(crop_size) != 2 or crop_size[0] != crop_size[1] or crop_size[0] > size:
            return None
        squash, crop_side = False, int(crop_size[0])
    elif names == ["Resize", "MaybeConvertMode", "MaybeToTensor", "Normalize"]:
        resize, mode, _, normalize = steps
        sides = tuple(resize.size) if isinstance(resize.size, (list, tuple)) else ()
        if len(sides) != 2 or sides[0] != sides[1]:
            return None
        size, squash, crop_side = int(sides[0]), True, None
    else:
        return None
    interpolation = str(getattr(resize.interpolation, "value", resize.interpolation))
    if (
        getattr(resize, "max_size", None) is not None
        or getattr(mode, "mode", "RGB") != "RGB"
        or interpolation not in RESAMPLING
        or len(normalize.mean) != 3
        or len(normalize.std) != 3
    ):
        return None
    return ImagePrep(
        size=size,
        crop=crop_side,
        squash=squash,
        interpolation=interpolation,
        mean=(float(normalize.mean[0]), float(normalize.mean[1]), float(normalize.mean[2])),
        std=(float(normalize.std[0]), float(normalize.std[1]), float(normalize.std[2])),
    )
