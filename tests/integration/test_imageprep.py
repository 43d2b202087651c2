"""The torch-free preprocessing gives open_clip's pixels exactly, for every shape and mode of picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.embed.imageprep import ImagePrep, describe
from tests.helpers import make_image

SIZES = [(800, 600), (600, 800), (224, 224), (225, 224), (100, 60), (37, 91), (1, 1), (3000, 31)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"interpolation": "bilinear"},
        {"resize_mode": "squash"},
        {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 1.0)},
    ],
)
def test_pixels_are_open_clips_exactly(kwargs: dict) -> None:
    from open_clip.transform import image_transform

    transform = image_transform(224, is_train=False, **kwargs)
    prep = describe(transform)
    assert prep is not None
    assert ImagePrep.from_dict(prep.to_dict()) == prep
    for i, size in enumerate(SIZES):
        for mode in ("RGB", "L", "RGBA", "P"):
            picture = make_image(i, size=size, mode=mode)
            expected = transform(picture).numpy()
            got = prep(picture)
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected, err_msg=f"{size} {mode}")


def test_a_transform_it_cannot_repeat_is_left_to_open_clip() -> None:
    from open_clip.transform import image_transform

    assert describe(image_transform(224, is_train=False, resize_mode="longest")) is None  # pads
    assert describe(image_transform(224, is_train=True)) is None
    assert describe(object()) is None


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {
            "size": 224,
            "crop": 224,
            "squash": False,
            "interpolation": "lanczos",
            "mean": [0] * 3,
            "std": [1] * 3,
        },
        {
            "size": 224,
            "crop": 300,
            "squash": False,
            "interpolation": "bicubic",
            "mean": [0] * 3,
            "std": [1] * 3,
        },
        {
            "size": 224,
            "crop": None,
            "squash": False,
            "interpolation": "bicubic",
            "mean": [0] * 3,
            "std": [1] * 3,
        },
        {"size": 224, "crop": 224, "squash": False, "interpolation": "bicubic", "mean": [0], "std": [1] * 3},
    ],
)
def test_a_recorded_preprocessing_that_does_not_make_sense_is_refused(data: object) -> None:
    assert ImagePrep.from_dict(data) is None


def test_an_image_smaller_than_the_crop_is_scaled_up_like_open_clip() -> None:
    from open_clip.transform import image_transform

    transform = image_transform(64, is_train=False)
    prep = describe(transform)
    assert prep is not None
    picture = Image.new("RGB", (5, 9), (200, 10, 30))
    np.testing.assert_array_equal(prep(picture), transform(picture).numpy())
