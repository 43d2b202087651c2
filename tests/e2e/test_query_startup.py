"""A query from the command line loads only what it needs, and a model's first use answers at once.

Fresh processes, since what a new process imports is the point: a text or image query of a model
exported before imports neither torch nor open_clip and gives the full load's hits; on a fresh
install the first command runs on PyTorch fp32 while the export and the runtime probe run in the
background, talking in their log, and the commands after it load the tower alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from lookalike.embed import background
from tests.cli import lookalike
from tests.helpers import write_images

pytestmark = pytest.mark.slow

TORCH = ("torch", "open_clip", "torchvision", "timm")

# One process runs the commands in turn and reports, after each, its exit code, its JSON answer and
# the heavy modules loaded so far.
PROBE = """
import contextlib, io, json, sys
from lookalike.cli import app
heavy = {heavy!r}
report = []
for args in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            app(args, prog_name="lookalike")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    report.append([args, code, out.getvalue(), sorted(m for m in heavy if m in sys.modules)])
sys.stdout.write("\\nREPORT " + json.dumps(report) + "\\n")
"""


def _env(tmp_path: Path, tiny_model: tuple[Path, Path], cache: Path, probe: str = "now") -> dict[str, str]:
    config, checkpoint = tiny_model
    return {
        **os.environ,
        "LOOKALIKE_DB": str(tmp_path / "startup.db"),
        "LOOKALIKE_MODEL": str(config),
        "LOOKALIKE_PRETRAINED": str(checkpoint),
        "LOOKALIKE_CACHE_DIR": str(cache),
        "LOOKALIKE_PROBE": probe,
        "HF_HUB_OFFLINE": "1",
    }


def _run(env: dict[str, str], commands: list[list[str]]) -> list[tuple[list[str], int, str, list[str]]]:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=TORCH), json.dumps(commands)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "REPORT " in done.stdout, done.stderr
    return [tuple(entry) for entry in json.loads(done.stdout.rsplit("REPORT ", 1)[1])]  # type: ignore[misc]


def _scores(output: str) -> list[tuple[int, float]]:
    return [(hit["id"], hit["score"]) for hit in json.loads(output)["hits"]]


def test_a_query_of_an_exported_model_loads_neither_torch_nor_the_other_tower(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    # The runtime is named: under `auto` the probe may find PyTorch fastest for a tower of this tiny
    # model on a loaded machine (it did, in a full run at load 9), and that tower then rightly needs
    # torch. What is tested is that an exported tower runs alone.
    env = {**_env(tmp_path, tiny_model, tmp_path / "cache"), "LOOKALIKE_RUNTIME": "onnx"}
    photos = write_images(tmp_path / "photos", 6)
    made = lookalike(
        env, "index", str(tmp_path / "photos")
    )  # the full load: exports, probes, writes the manifest
    assert made.returncode == 0, made.stderr
    queries = [
        ["search", "--text", "red floral dress", "--json"],
        ["search", "--image", str(photos[2]), "--json"],
    ]
    fast = _run(env, queries)
    for args, code, _out, loaded in fast:
        assert code == 0 and loaded == [], f"`lookalike {' '.join(args)}` imported {loaded}"
    # The same queries through the full load (a device asked for by name is another identity, so
    # nothing exported is vouched for): the same hits, the same scores.
    full = _run({**env, "LOOKALIKE_DEVICE": "cpu"}, queries)
    for (args, _, fast_out, _), (_, code, full_out, loaded) in zip(fast, full, strict=True):
        assert code == 0 and "torch" in loaded, args
        assert [i for i, _ in _scores(fast_out)] == [i for i, _ in _scores(full_out)]
        for (_, mine), (_, theirs) in zip(_scores(fast_out), _scores(full_out), strict=True):
            assert abs(mine - theirs) < 1e-4
    assert _scores(fast[1][2])[0][1] > 0.999  # the stored picture finds itself
    write_images(tmp_path / "more", 2, start=10)
    ((_, code, _, loaded),) = _run(env, [["index", str(tmp_path / "more")]])  # the image tower alone too
    assert code == 0 and loaded == []


def _log_gaps(log: Path) -> list[float]:
    stamps = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp())
        except ValueError:
            continue  # a traceback's lines
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def test_the_first_use_answers_on_pytorch_while_the_probe_runs_in_the_background(
    tmp_path: Path, tiny_model: tuple[Path, Path]
) -> None:
    cache = tmp_path / "fresh-cache"
    env = _env(tmp_path, tiny_model, cache, probe="background")
    write_images(tmp_path / "photos", 4)
    first = lookalike(env, "index", str(tmp_path / "photos"))
    assert first.returncode == 0, first.stderr
    assert "first use of tiny-clip.json:tiny-clip.pt on this machine: running on PyTorch fp32" in first.stderr
    (lock,) = (cache / "probing").glob("*.lock")
    key = lock.stem
    deadline = time.monotonic() + 540
    while background.running(cache, key) and time.monotonic() < deadline:
        time.sleep(1)
    assert not background.running(cache, key)
    log = cache / "probing" / f"{key}.log"
    text = log.read_text(encoding="utf-8")
    assert "done: images on " in text, text
    assert "exporting the text tower to ONNX" in text and "measuring onnx-int8-static" in text
    assert max(_log_gaps(log)) <= 5.0, text  # nothing silent for more than 5 s
    # The next command loads the text tower alone, without torch, and says nothing more.
    ((args, code, out, loaded),) = _run(env, [["search", "--text", "red dress", "--json"]])
    assert code == 0 and loaded == [] and len(json.loads(out)["hits"]) == 4
