"""An elongated PNG bomb (1,000,000 × 1, 200,000 × 1) sent to the API: a 4xx for a search upload, one
skipped file in an index job (which still succeeds); the pictures beside it are indexed.

The fake embedder here resizes like an encoder (short side to 224) in its head: a picture whose resize
would pass 50 Mpx raises the MemoryError the real one would, so a bomb that got past decoding fails loudly.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder, write_images

BOMBS = {"wide.png": (1_000_000, 1), "long.png": (200_000, 1)}


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


class ResizingEmbedder(FakeEmbedder):
    """The fake embedder, failing as a CLIP encoder's short-side resize would on a bomb."""

    @staticmethod
    def _check(image: Image.Image) -> None:
        short, long = sorted(image.size)
        if 224 * 224 * long / short > 50_000_000:
            raise MemoryError(f"resizing {image.size} to 224 on its short side")

    def prepare_image(self, image: Image.Image) -> Any:
        self._check(image)
        return super().prepare_image(image)

    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]:
        for image in images:
            self._check(image)
        return super()._encode_images(images)


def make(tmp_path: Path) -> Context:
    write_images(tmp_path / "photos", 3)
    ctx = Context(
        load_settings(db=str(tmp_path / "bombs.db"), workers=2, index_roots=str(tmp_path / "roots")),
        embedder=ResizingEmbedder(),
    )
    ingest.index(ctx, str(tmp_path / "photos"), source="product")
    return ctx


def wait_for(api: TestClient, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_a_bomb_uploaded_to_search_is_a_4xx_with_its_reason(tmp_path: Path) -> None:
    with TestClient(create_app(make(tmp_path)), raise_server_exceptions=False) as api:
        for name, size in BOMBS.items():
            answer = api.post("/search", files={"image": (name, png(*size), "image/png")})
            assert answer.status_code == 422, answer.text
            assert "aspect ratio" in answer.json()["detail"] and "100:1" in answer.json()["detail"]
        assert api.post("/search", json={"text": "x", "k": 1}).status_code == 200  # still answering


def test_a_bomb_in_an_index_job_is_skipped_and_the_job_succeeds(tmp_path: Path) -> None:
    roots = tmp_path / "roots"
    good = write_images(roots, 2, start=40)
    for name, size in BOMBS.items():
        (roots / name).write_bytes(png(*size))
    with TestClient(create_app(make(tmp_path)), raise_server_exceptions=False) as api:
        by_path = wait_for(api, api.post("/index", json={"inputs": [str(roots)]}).json()["job_id"])
        assert (by_path["status"], by_path["indexed"]) == ("done", 2), by_path
        assert sorted(Path(s["uri"]).name for s in by_path["skipped"]) == sorted(BOMBS)
        assert all("aspect ratio" in s["reason"] for s in by_path["skipped"])

        files = [("files", (name, png(*size), "image/png")) for name, size in BOMBS.items()]
        files.append(
            (
                "files",
                ("good.jpg", write_images(tmp_path / "more", 1, start=60)[0].read_bytes(), "image/jpeg"),
            )
        )
        started = api.post("/index", files=files, data={"source": "upload"})
        assert started.status_code == 202
        uploaded = wait_for(api, started.json()["job_id"])
        assert (uploaded["status"], uploaded["indexed"]) == ("done", 1), uploaded
        assert sorted(s["uri"] for s in uploaded["skipped"]) == sorted(BOMBS)
        assert api.get("/stats").json()["rows"] == 3 + len(good) + 1
