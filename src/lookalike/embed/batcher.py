"""Concurrent queries encoded together: a server's many one-text and one-image requests in small batches.

Each request thread hands its texts or prepared images to one encoder thread and waits. The
encoder takes what has arrived and, while other callers are still on their way (one preparing
its image), waits a few milliseconds more for them (or until the batch is full); it encodes all
texts in one call and all images in another, and gives each request its own rows. A lone
request never waits for batch-mates that are not coming: it costs what a call of the inner
embedder costs, plus one hand-over between threads. The runtimes give an input the same vector alone or in any batch (the probe in
``runtimes.py`` refuses one that does not), so batching changes speed, never answers. A batch
that fails is encoded again one request at a time, so that one bad request fails alone.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.embed.base import Embedder, Vectors


@dataclass
class _Request:
    kind: str  # "texts" or "images" (prepared)
    inputs: Sequence[Any]
    future: Future[Vectors] = field(default_factory=Future)


class BatchingEmbedder(Embedder):
    """An embedder whose calls from many threads are encoded together by one encoder thread.

    Args:
        inner: the embedder that encodes; its ``prepare_image`` runs in the callers' threads.
        max_batch: inputs per batch; a batch is encoded as soon as it has this many.
        max_wait_ms: how long the encoder may wait for more requests after the first one arrives,
            when other callers have called but not yet handed their inputs over.
    """

    def __init__(self, inner: Embedder, *, max_batch: int = 16, max_wait_ms: float = 3.0) -> None:
        super().__init__(inner.batch_size)
        self.inner = inner
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_ms) / 1000
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()  # guards starting the thread, closing, and queueing
        self._closed = False
        self._callers = 0  # calls made and not yet answered (preparing, queued or being encoded)
        self._callers_lock = threading.Lock()
        self.batches = 0  # encoder calls made, and the most requests one of them answered
        self.largest_batch = 0
        self.waits = 0  # times the encoder waited for callers still on their way

    @property
    def queued(self) -> int:
        """Requests handed over and waiting for the encoder (a measure for tests and diagnostics)."""
        return self._queue.qsize()

    # What the inner embedder is, unchanged.
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def supports_text(self) -> bool:
        return self.inner.supports_text

    @property
    def multilingual(self) -> bool:
        return self.inner.multilingual

    @property
    def logit_scale(self) -> float:
        return self.inner.logit_scale

    @property
    def input_size(self) -> int | None:
        return self.inner.input_size

    @property
    def runtime(self) -> str:
        return self.inner.runtime

    @property
    def runtime_choice(self) -> dict[str, Any]:
        return self.inner.runtime_choice

    def _load(self) -> None:
        self.inner.load()

    def prepare_image(self, image: Image.Image) -> Any:
        return self.inner.prepare_image(image)

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        self._arrive()  # before preparing: the encoder may wait for this caller's images
        try:
            prepared = [self.inner.prepare_image(image) for image in images]
        except BaseException:
            self._leave(1)
            raise
        return self._submit("images", prepared, arrived=True)

    def embed_prepared(self, prepared: Sequence[Any]) -> Vectors:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        return self._submit("images", list(prepared))

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        return self._submit("texts", list(texts))

    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]:
        raise NotImplementedError  # embed_images is overridden

    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]:
        raise NotImplementedError  # embed_texts is overridden

    def close(self) -> None:
        """Stop the encoder thread once the requests already queued are answered."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            if self._thread is None:
                return
            self._queue.put(None)  # after every request already queued; none can follow it
        self._thread.join(timeout=60)

    def _arrive(self) -> None:
        with self._callers_lock:
            self._callers += 1

    def _leave(self, count: int) -> None:
        with self._callers_lock:
            self._callers -= count

    def _submit(self, kind: str, inputs: list[Any], *, arrived: bool = False) -> Vectors:
        request = _Request(kind, inputs)
        with self._start_lock:
            if self._closed:
                if arrived:
                    self._leave(1)
                raise RuntimeError("the batching embedder is closed")
            if not arrived:
                self._arrive()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lookalike-encoder", daemon=True)
                self._thread.start()
            self._queue.put(request)
        return request.future.result()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            try:
                for kind in ("texts", "images"):
                    self._encode([r for r in batch if r.kind == kind], kind)
            finally:
                # Whatever happened, no caller waits for ever.
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(RuntimeError("the encoder stopped"))
                # Answered: no longer callers the next batch could wait for (counted here, not in
                # the callers' threads, so that the count never lags behind the answers).
                self._leave(len(batch))
            if stop:
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """The first request and those already queued, up to a full batch, and those arriving within the
        wait while other callers are on their way; and whether to stop."""
        batch, size = [first], len(first.inputs)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                with self._callers_lock:
                    coming = self._callers > len(batch)  # called, not yet queued
                left = deadline - time.monotonic()
                if not coming or left <= 0:
                    break
                self.waits += 1
                try:
                    more = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if more is None:
                return batch, True
            batch.append(more)
            size += len(more.inputs)
        return batch, False

    def _encode(self, requests: list[_Request], kind: str) -> None:
        if not requests:
            return
        self.largest_batch = max(self.largest_batch, len(requests))
        try:
            vectors = self._call(kind, [x for r in requests for x in r.inputs])
        except Exception as exc:
            if len(requests) == 1:
                requests[0].future.set_exception(exc)
                return
            for request in requests:  # find the one that fails; the others still get their answers
                try:
                    request.future.set_result(self._call(kind, request.inputs))
                except Exception as alone:  # raised in the request's own thread
                    request.future.set_exception(alone)
            return
        start = 0
        for request in requests:
            request.future.set_result(vectors[start : start + len(request.inputs)])
            start += len(request.inputs)

    def _call(self, kind: str, inputs: Sequence[Any]) -> Vectors:
        self.batches += 1
        if kind == "texts":
            return self.inner.embed_texts(inputs)
        return self.inner.embed_prepared(inputs)
