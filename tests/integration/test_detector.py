"""torchvision's detection architecture with random weights, loaded through the local-weights path.

No COCO weights can be downloaded here, so the architecture is built with random weights and
saved the way a user's downloaded or trained file would be; its boxes are meaningless, but they
run through the same loading, clipping, cropping and storing code as real ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lookalike.embed.detect import TorchvisionDetector
from lookalike.errors import ModelUnavailableError
from tests.cli import lookalike
from tests.helpers import make_image, write_images

pytestmark = pytest.mark.slow
ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the smallest of torchvision's Faster R-CNNs


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    detector = TorchvisionDetector(ARCH, "random", min_score=0.0)
    detector.load()
    path = tmp_path_factory.mktemp("detector") / "detector.pth"
    torch.save(detector._model.state_dict(), path)
    return path


def test_a_local_weights_file_loads_and_its_boxes_lie_inside_the_image(detector_file: Path) -> None:
    detector = TorchvisionDetector(ARCH, str(detector_file), min_score=0.0, min_size=8, max_boxes=5)
    image = make_image(3, size=(200, 140))
    found = detector.detect(image)
    assert 0 < len(found) <= 5
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for detection in found:
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 140
        assert min(x1 - x0, y1 - y0) >= 8 and detection.label  # a COCO category name
    strict = TorchvisionDetector(ARCH, str(detector_file), min_score=0.99)
    assert strict.detect(image) == []  # random weights are never that sure


def test_weights_that_do_not_fit_and_missing_files_are_clear_errors(
    detector_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelUnavailableError, match="do not fit ssdlite320"):
        TorchvisionDetector("ssdlite320_mobilenet_v3_large", str(detector_file)).load()
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        TorchvisionDetector(ARCH, str(tmp_path / "none.pth")).load()
    os.environ["TORCH_HOME"] = str(tmp_path / "torch-home")  # nothing cached there
    try:
        with pytest.raises(ModelUnavailableError, match="--detector-weights FILE"):
            TorchvisionDetector(ARCH).load()  # HF_HUB_OFFLINE=1: no download is tried
    finally:
        del os.environ["TORCH_HOME"]


run = lookalike  # in-process (tests/cli.py)


def test_index_and_search_with_detect_from_the_command_line(
    detector_file: Path, tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    config, checkpoint = tiny_model
    env = {
        **os.environ,
        "LOOKALIKE_MODEL": str(config),
        "LOOKALIKE_PRETRAINED": str(checkpoint),
        "LOOKALIKE_DB": str(tmp_path / "detect.db"),
        "LOOKALIKE_DETECTOR": ARCH,
        "TORCH_HOME": str(tmp_path / "torch-home"),
        "COLUMNS": "200",
    }
    photos = write_images(tmp_path / "photos", 4)
    offline = run(env, "index", str(tmp_path / "photos"), "--detect")
    assert offline.returncode == 3 and "--detector-weights FILE" in offline.stderr
    assert "Traceback" not in offline.stderr
    assert run(env, "stats").returncode == 4  # no collection was created

    weights = ["--detector-weights", str(detector_file), "--detect-min-score", "0"]
    indexed = run(env, "index", str(tmp_path / "photos"), "--detect", *weights)
    assert indexed.returncode == 0, indexed.stderr
    assert "indexed 4 new images" in indexed.stdout and "detected objects" in indexed.stdout

    found = run(env, "search", "--image", str(photos[1]), "--detect", *weights, "--k", "5", "--json")
    assert found.returncode == 0, found.stderr
    payload = json.loads(found.stdout)
    assert payload["query_box"] is not None
    top = payload["hits"][0]
    assert top["box"] == payload["query_box"] and top["uri"] == str(photos[1].resolve())
    assert top["score"] > 0.999 and top["parent_sha256"]

    table = run(env, "search", "--image", str(photos[1]), "--detect", *weights)
    assert "box" in table.stdout and "label" in table.stdout and "searched the part" in table.stderr
    bad = run(env, "search", "--image", str(photos[1]), "--box", "1,2,3")
    assert bad.returncode == 2 and "x0,y0,x1,y1" in bad.stderr
