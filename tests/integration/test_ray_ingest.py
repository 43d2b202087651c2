"""`lookalike index --ray` on a local Ray instance with 2 CPUs (one per module: Ray starts slowly),
against the local runner on the same folder, with the tiny real model."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike.config import load_settings
from lookalike.store import Item
from lookalike.usecases import Context
from tests.cli import lookalike
from tests.helpers import jpeg_bytes, make_image, write_images
from tests.s3 import CLEARED, aws_environment, moto_endpoint

ray = pytest.importorskip("ray")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on loopback, started before Ray so that its workers get the AWS variables."""
    pytest.importorskip("moto.server")
    with moto_endpoint() as url:
        yield url


@pytest.fixture(scope="module", autouse=True)
def local_ray(s3_endpoint: str) -> Iterator[None]:
    """One local Ray instance for the module; the runner joins it instead of starting its own.

    Its workers inherit this process's environment: the AWS variables of the test's S3 server, as
    a cluster's nodes would have their own.
    """
    with pytest.MonkeyPatch.context() as patch:
        for key, value in aws_environment(s3_endpoint).items():
            patch.setenv(key, value)
        for key in CLEARED:
            patch.delenv(key, raising=False)
        patch.setenv("RAY_gcs_server_port_wait_time_s", "60")  # a busy CI machine starts Ray slowly
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        yield
        ray.shutdown()


@pytest.fixture()
def env(tmp_path: Path, tiny_model: tuple[Path, Path]) -> dict[str, str]:
    config, checkpoint = tiny_model
    return {
        **os.environ,
        "LOOKALIKE_MODEL": str(config),
        "LOOKALIKE_PRETRAINED": str(checkpoint),
        "LOOKALIKE_RUNTIME": "torch",  # the reference runtime on both sides; auto's probe is tested elsewhere
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }


def _items(env: dict[str, str], db: Path) -> dict[int, Item]:
    settings = load_settings(
        db=str(db), model=env["LOOKALIKE_MODEL"], pretrained=env["LOOKALIKE_PRETRAINED"], runtime="torch"
    )
    ctx = Context(settings)
    try:
        return {i.id: i for batch in ctx.store.iter_items(with_vector=True) for i in batch}
    finally:
        ctx.close()


def test_ray_gives_the_local_runs_ids_and_vectors_and_reports_the_same_skips(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 10)
    write_images(folder / "sub", 3, start=20, suffix=".png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "logo.svg").write_text("<svg/>")

    local = lookalike({**env, "LOOKALIKE_DB": str(tmp_path / "local.db")}, "index", str(folder), "--json")
    on_ray = lookalike(
        {**env, "LOOKALIKE_DB": str(tmp_path / "ray.db")}, "index", str(folder), "--ray", "--json"
    )

    assert local.returncode == 0 and on_ray.returncode == 0, on_ray.stderr
    expected, got = json.loads(local.stdout), json.loads(on_ray.stdout)
    assert (got["indexed"], got["already_indexed"]) == (expected["indexed"], 0) == (13, 0)
    skipped = sorted((s["uri"], s["reason"]) for s in got["skipped"])
    assert skipped == sorted((s["uri"], s["reason"]) for s in expected["skipped"]) and len(skipped) == 2
    ours, theirs = _items(env, tmp_path / "ray.db"), _items(env, tmp_path / "local.db")
    assert set(ours) == set(theirs)
    for item_id, item in ours.items():
        other = theirs[item_id]
        assert (item.sha256, item.uri, item.item_id, item.width, item.height, item.created_at) == (
            other.sha256,
            other.uri,
            other.item_id,
            other.width,
            other.height,
            other.created_at,
        )
        cosine = float(np.dot(item.vector, other.vector))
        assert cosine >= 0.9999, (item.uri, cosine)

    again = lookalike(
        {**env, "LOOKALIKE_DB": str(tmp_path / "ray.db")}, "index", str(folder), "--ray", "--json"
    )
    assert (json.loads(again.stdout)["indexed"], json.loads(again.stdout)["already_indexed"]) == (0, 13)


def test_the_driver_never_loads_the_model_the_actors_do(
    tmp_path: Path, tiny_model: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.embed.openclip import OpenClipEmbedder
    from lookalike.usecases import ingest

    folder = tmp_path / "photos"
    write_images(folder, 5)
    write_images(folder / "sub", 2, start=30)
    config, checkpoint = tiny_model

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the driver loaded the model")

    # In this process only: the actors are processes of their own.
    monkeypatch.setattr(OpenClipEmbedder, "_load", refuse)
    monkeypatch.setattr(OpenClipEmbedder, "_load_alone", refuse)
    settings = load_settings(
        db=str(tmp_path / "ray.db"), model=str(config), pretrained=str(checkpoint), runtime="torch"
    )
    ctx = Context(settings)
    totals: list[int] = []
    try:
        report = ingest.index(ctx, str(folder), on_ray=ingest.OnRay(), on_start=totals.append)
        stored = [item for batch in ctx.store.iter_items(with_vector=True) for item in batch]
    finally:
        ctx.close()

    assert (report.indexed, totals) == (7, [7])
    assert len(stored) == 7 and all(abs(float(np.linalg.norm(i.vector)) - 1) < 1e-4 for i in stored)


def test_a_model_the_actors_cannot_load_stops_the_run_and_leaves_no_collection(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 3)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    db = tmp_path / "ray.db"

    run = lookalike(
        {**env, "LOOKALIKE_DB": str(db), "LOOKALIKE_PRETRAINED": str(broken)}, "index", str(folder), "--ray"
    )

    assert run.returncode == 2, run.stderr
    assert "A Ray actor could not load the model" in run.stderr and str(broken) in run.stderr
    assert "Traceback" not in run.stderr
    settings = load_settings(db=str(db), model=env["LOOKALIKE_MODEL"], pretrained=str(broken))
    ctx = Context(settings)
    try:
        assert not ctx.store.exists()
    finally:
        ctx.close()


def test_ray_reads_a_prefix_in_s3_with_the_local_runs_ids(
    tmp_path: Path, env: dict[str, str], s3_endpoint: str
) -> None:
    import boto3

    bucket = boto3.resource("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="ray-shop")
    for i in range(5):
        bucket.put_object(Key=f"p/{i}.jpg", Body=jpeg_bytes(make_image(50 + i)))
    bucket.put_object(Key="p/torn.jpg", Body=b"\xff\xd8 torn")
    prefix = "s3://ray-shop/p"

    local = lookalike({**env, "LOOKALIKE_DB": str(tmp_path / "local.db")}, "index", prefix, "--json")
    on_ray = lookalike({**env, "LOOKALIKE_DB": str(tmp_path / "ray.db")}, "index", prefix, "--ray", "--json")

    assert on_ray.returncode == 0, on_ray.stderr
    got = json.loads(on_ray.stdout)
    assert got["indexed"] == json.loads(local.stdout)["indexed"] == 5
    assert [s["uri"] for s in got["skipped"]] == [f"{prefix}/torn.jpg"]
    ours, theirs = _items(env, tmp_path / "ray.db"), _items(env, tmp_path / "local.db")
    assert set(ours) == set(theirs) and {i.uri for i in ours.values()} == {
        f"{prefix}/{i}.jpg" for i in range(5)
    }


def test_sync_on_ray_deletes_what_is_gone_and_keeps_what_could_not_be_read(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = tmp_path / "photos"
    paths = write_images(folder, 4)
    run_env = {**env, "LOOKALIKE_DB": str(tmp_path / "ray.db")}
    first = lookalike(run_env, "index", str(folder), "--ray", "--sync", "--json")
    assert json.loads(first.stdout)["indexed"] == 4, first.stderr
    paths[0].unlink()  # gone: its item goes
    paths[1].write_bytes(b"\xff\xd8 torn")  # listed but unreadable this time: its item stays

    second = lookalike(run_env, "index", str(folder), "--ray", "--sync", "--json")

    counts = json.loads(second.stdout)
    assert {k: counts[k] for k in ("added", "deleted", "kept", "left")} == {
        "added": 0,
        "deleted": 1,
        "kept": 1,
        "left": 2,
    }, second.stdout
    assert {Path(i.uri).name for i in _items(env, tmp_path / "ray.db").values()} == {
        p.name for p in paths[1:]
    }


def test_a_killed_ray_run_resumes_with_nothing_missing_and_no_duplicates(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 16)
    db = tmp_path / "ray.db"
    run_env = {**env, "LOOKALIKE_DB": str(db), "LOOKALIKE_BATCH_SIZE": "2", "PYTHONPATH": _pythonpath()}
    # A driver process of its own on the module's Ray (joined, as a cluster is), killed mid-run.
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lookalike",
            "index",
            str(folder),
            "--ray",
            "--ray-address",
            address,
            "--verbose",
        ],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_a_write(driver)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)

    resumed = lookalike(run_env, "index", str(folder), "--ray", "--json")

    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["already_indexed"] > 0, "the driver was killed before it wrote anything"
    assert report["indexed"] + report["already_indexed"] == 16
    stored = _items(env, db)
    assert len(stored) == 16 and len({i.uri for i in stored.values()}) == 16


def _pythonpath() -> str:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)


def _wait_for_a_write(driver: subprocess.Popen[bytes], limit_s: float = 240) -> None:
    """Until the driver says (--verbose) that it stored a batch of new items."""
    lines: queue.Queue[bytes] = queue.Queue()
    assert driver.stdout is not None
    stdout = driver.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + limit_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1).decode(errors="replace")
        except queue.Empty:
            if driver.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(r"stored (\d+) new items", line)
        if found and int(found.group(1)) > 0:
            return
    pytest.fail(f"the driver stored nothing before it ended or in time: {''.join(seen)[-2000:]}")
