"""`index --ray`'s choices made without a cluster: actor shapes per device, the GPU runtime's fp16
autocast (run on the CPU here), and the refusals a user meets before any model loads."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.errors import ConfigError
from lookalike.ingest.onray import GPU_BATCH, TASK_CPUS
from lookalike.usecases.ray_runner import INSTALL_HINT, actor_shape
from tests.helpers import write_images


def test_a_gpu_cluster_gets_one_actor_per_gpu_with_gpu_sized_batches() -> None:
    shape = actor_shape({"CPU": 32, "GPU": 4}, actors=None, batch_size=None, device="auto", default_batch=32)
    assert (shape.actors, shape.gpus, shape.device, shape.batch_size) == (4, 1.0, "cuda", GPU_BATCH)
    asked = actor_shape({"CPU": 32, "GPU": 4}, actors=2, batch_size=64, device="auto", default_batch=32)
    assert (asked.actors, asked.batch_size) == (2, 64)  # --actors and --batch-size win
    with pytest.raises(ConfigError, match="4 GPUs, one per actor"):
        actor_shape({"CPU": 32, "GPU": 4}, actors=5, batch_size=None, device="auto", default_batch=32)


def test_a_cpu_cluster_shares_its_cores_between_actors_and_the_tasks() -> None:
    one = actor_shape({"CPU": 2}, actors=None, batch_size=None, device="auto", default_batch=32)
    assert (one.actors, one.gpus, one.cpus, one.device, one.batch_size) == (1, 0.0, 1.5, "cpu", 32)
    two = actor_shape({"CPU": 2}, actors=2, batch_size=None, device="auto", default_batch=32)
    assert two.actors * two.cpus + TASK_CPUS <= 2 and two.cpus == 0.75
    big = actor_shape({"CPU": 64}, actors=None, batch_size=None, device="auto", default_batch=32)
    assert big.actors == 16 and big.cpus <= 4
    with pytest.raises(ConfigError, match="at most 6 actors"):
        actor_shape({"CPU": 2}, actors=7, batch_size=None, device="auto", default_batch=32)


def test_device_cpu_keeps_the_actors_off_the_gpus() -> None:
    shape = actor_shape({"CPU": 8, "GPU": 1}, actors=None, batch_size=None, device="cpu", default_batch=32)
    assert (shape.gpus, shape.device, shape.actors) == (0.0, "cpu", 2)


def test_auto_on_a_gpu_runs_torch_under_fp16_autocast(tiny_model: tuple[Path, Path]) -> None:
    from lookalike.embed.loading import load_open_clip
    from lookalike.embed.runtimes import GPU_AUTOCAST, TorchRuntime, choose_runtime

    config, checkpoint = tiny_model
    model = load_open_clip(str(config), str(checkpoint), "cpu").model
    chosen = choose_runtime(
        "auto",
        model,
        config={},
        device="cuda",  # no GPU is touched while a runtime is chosen
        cache_dir=Path("/nonexistent"),
        probe_pixels=np.zeros((1, 3, 64, 64), np.float32),
        probe_tokens=np.zeros((1, 77), np.int64),
    )
    assert isinstance(chosen, TorchRuntime)
    assert (chosen.label, chosen.autocast, chosen.device) == ("torch-fp16-autocast", GPU_AUTOCAST, "cuda")

    # The same code path on the CPU: autocast really lowers the precision, and stays within the bar.
    pixels = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    exact = TorchRuntime(model, "cpu").images(pixels)
    for dtype in (torch.bfloat16, torch.float16):
        lowered = TorchRuntime(model, "cpu", "x", autocast=dtype).images(pixels)
        assert not np.array_equal(lowered, exact)
        cosine = (
            np.sum(exact * lowered, axis=1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(lowered, axis=1)
        )
        assert cosine.min() >= 0.99, (dtype, cosine)


def test_ray_without_ray_installed_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_images(tmp_path / "photos", 1)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(
        app, ["index", str(tmp_path / "photos"), "--ray", "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code != 0
    assert INSTALL_HINT in " ".join(result.output.split())
    assert not (tmp_path / "x.db").exists()  # refused before anything opened


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actors", "2"], "--actors goes with --ray"),
        (["--ray-address", "auto"], "--ray-address goes with --ray"),
        (["--ray", "--detect"], "--detect is not offered with --ray"),
    ],
)
def test_ray_options_that_cannot_run_are_refused_before_the_model_loads(
    tmp_path: Path, args: list[str], message: str
) -> None:
    write_images(tmp_path / "photos", 1)
    result = CliRunner().invoke(
        app, ["index", str(tmp_path / "photos"), *args, "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "x.db").exists()


def test_a_ray_that_cannot_start_is_tried_twice_then_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    from lookalike.usecases import ray_runner

    tries: list[object] = []

    def init(**kwargs: object) -> None:
        tries.append(kwargs.get("address"))
        raise Exception("The current node timed out during startup.")  # what Ray raises, bare

    for name in ("RAY_BACKEND_LOG_LEVEL", "RAY_gcs_server_port_wait_time_s"):
        monkeypatch.delenv(name, raising=False)  # connect() sets them: they go again after the test
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(ConfigError, match="timed out during startup.*ray start --head"):
        ray_runner.connect(None)
    assert tries == [None, None]
    with pytest.raises(ConfigError, match="Cannot start or join Ray at ray://head:10001"):
        ray_runner.connect("ray://head:10001")  # a cluster's address is not retried
    assert tries == [None, None, "ray://head:10001"]
