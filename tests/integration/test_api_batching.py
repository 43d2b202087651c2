"""The API server encodes concurrent queries together: over real sockets, each request gets its own answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.embed.batcher import BatchingEmbedder
from lookalike.errors import ConfigError
from lookalike.usecases import Context, ingest
from tests.helpers import FakeEmbedder, make_image, write_images
from tests.serving import serving


class Refusing(FakeEmbedder):
    """The fake embedder, which cannot encode the text "boom", and encodes only while ``gate`` is open
    (a test holds the encoder on its first batch so that the others queue up behind it, whatever the
    machine's speed)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]:
        self.gate.wait(60)
        if "boom" in texts:
            raise ConfigError("this text cannot be encoded")
        return super()._encode_texts(texts)

    def _encode_images(self, images: Sequence[Any]) -> npt.NDArray[np.floating]:
        self.gate.wait(60)
        return super()._encode_images(images)


def test_concurrent_text_and_image_queries_get_their_own_answers(tmp_path: Path) -> None:
    photos = write_images(tmp_path / "photos", 8)
    embedder = Refusing()
    settings = load_settings(db=str(tmp_path / "api.db"), workers=2, serve_batch_wait_ms=200)
    ctx = Context(settings, embedder=embedder)
    ingest.index(ctx, str(tmp_path / "photos"), source="product")
    for i in range(8):  # "photo i" means exactly photo i to the fake embedder
        embedder.concepts[f"photo {i}"] = embedder.embed_images([make_image(i)])[0]
    app = create_app(ctx)

    def ask(job: tuple[str, int]) -> tuple[int, Any]:
        kind, i = job
        with httpx.Client(base_url=base, timeout=60) as client:
            if kind == "text":
                response = client.post("/search", json={"text": f"photo {i}", "k": 1})
            elif kind == "image":
                files = {"image": ("q.jpg", photos[i].read_bytes(), "image/jpeg")}
                response = client.post("/search", files=files, data={"k": "1"})
            elif kind == "corrupt":
                response = client.post("/search", files={"image": ("q.jpg", b"not a jpeg", "image/jpeg")})
            else:
                response = client.post("/search", json={"text": "boom"})
        return response.status_code, response.json()

    jobs = [(kind, i) for i in range(8) for kind in ("text", "image")] * 2
    jobs += [("corrupt", 0), ("boom", 0), ("boom", 1)]
    with serving(app) as base, ThreadPoolExecutor(len(jobs)) as pool:
        batcher = ctx.embedder
        assert isinstance(batcher, BatchingEmbedder)
        embedder.gate.clear()  # the first batch waits: the requests behind it queue up
        pending = pool.map(ask, jobs, timeout=120)
        deadline = time.monotonic() + 60
        while batcher.queued < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        embedder.gate.set()
        answers = list(pending)
        largest = batcher.largest_batch
    for (kind, i), (status, body) in zip(jobs, answers, strict=True):
        if kind in ("text", "image"):
            assert status == 200, body
            assert body["hits"][0]["item_id"] == f"img_{i:04d}"
        elif kind == "corrupt":
            assert status == 422
        else:
            assert status == 400 and "cannot be encoded" in body["detail"]
    assert largest >= 2  # some requests were encoded together
