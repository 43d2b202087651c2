"""The batching embedder: concurrent calls are encoded together, each gets its own rows, errors stay its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from lookalike.embed.batcher import BatchingEmbedder
from tests.helpers import FakeEmbedder, make_image


class Recording(FakeEmbedder):
    """The fake embedder, counting the batches it encodes and refusing the text "boom"."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.batch_sizes: list[int] = []

    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]:
        if "boom" in texts:
            raise ValueError("this text cannot be encoded")
        self.batch_sizes.append(len(texts))
        return super()._encode_texts(texts)

    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]:
        self.batch_sizes.append(len(images))
        return super()._encode_images(images)


def _all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; an exception is returned as the call's result."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        start.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [f.result(timeout=60) for f in futures]


def test_concurrent_texts_and_images_get_their_own_vectors_from_fewer_batches() -> None:
    inner = Recording()
    batching = BatchingEmbedder(inner, max_batch=64, max_wait_ms=300)
    texts = [f"query {i}" for i in range(12)]
    images = [make_image(i) for i in range(6)]
    calls: list[Callable[[], Any]] = [lambda t=t: batching.embed_texts([t]) for t in texts]
    calls += [lambda i=i: batching.embed_images([i]) for i in images]
    calls.append(lambda: batching.embed_texts(["two", "texts"]))
    results = _all_at_once(calls)
    try:
        for text, got in zip(texts, results, strict=False):
            np.testing.assert_allclose(got, inner.embed_texts([text]), atol=1e-6)
        for image, got in zip(images, results[len(texts) :], strict=False):
            np.testing.assert_allclose(got, inner.embed_images([image]), atol=1e-6)
        np.testing.assert_allclose(results[-1], inner.embed_texts(["two", "texts"]), atol=1e-6)
        assert results[-1].shape == (2, 16)
        assert batching.batches < len(calls) and batching.largest_batch >= 2  # some shared an encoder call
    finally:
        batching.close()


def test_an_error_in_one_request_fails_only_that_request() -> None:
    batching = BatchingEmbedder(Recording(), max_batch=64, max_wait_ms=300)
    texts = ["red dress", "boom", "blue shoe", "white dog"]
    results = _all_at_once([lambda t=t: batching.embed_texts([t]) for t in texts])
    batching.close()
    assert isinstance(results[1], ValueError) and "cannot be encoded" in str(results[1])
    for text, got in zip(texts, results, strict=True):
        if text != "boom":
            np.testing.assert_allclose(got, Recording().embed_texts([text]), atol=1e-6)


def test_a_full_batch_goes_at_once_and_none_is_larger_than_asked() -> None:
    inner = Recording()
    batching = BatchingEmbedder(inner, max_batch=4, max_wait_ms=10_000)  # a full batch must not wait
    results = _all_at_once([lambda i=i: batching.embed_texts([f"t{i}"]) for i in range(8)])
    batching.close()
    assert all(isinstance(r, np.ndarray) for r in results)
    assert max(inner.batch_sizes) <= 4


def test_nothing_hangs_closing_and_calls_after_closing_fail_clearly() -> None:
    batching = BatchingEmbedder(Recording(), max_batch=8, max_wait_ms=1)
    assert batching.embed_texts(["one"]).shape == (1, 16)
    assert batching.embed_texts([]).shape == (0, 16)
    batching.close()
    batching.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        batching.embed_texts(["late"])
    assert batching.name == "fake-16" and batching.dim == 16


def test_a_lone_request_is_encoded_at_once_without_waiting_for_batch_mates() -> None:
    inner = Recording()
    batching = BatchingEmbedder(inner, max_batch=64, max_wait_ms=3_600_000)  # a wait would last an hour
    try:
        with ThreadPoolExecutor(1) as pool:
            for text in ("red dress", "blue shoe", "white dog"):  # one client, one query after another
                got = pool.submit(batching.embed_texts, [text]).result(timeout=60)
                np.testing.assert_allclose(got, inner.embed_texts([text]), atol=1e-6)
            image = make_image(3)
            got = pool.submit(batching.embed_images, [image]).result(timeout=60)
            np.testing.assert_allclose(got, inner.embed_images([image]), atol=1e-6)
        assert batching.waits == 0
    finally:
        batching.close()


class Preparing(Recording):
    """The fake embedder, whose preparing of a black image waits until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.go_on = threading.Event()

    def prepare_image(self, image: Image.Image) -> Any:
        if image.getextrema() == ((0, 0), (0, 0), (0, 0)):
            assert self.go_on.wait(60)
        return super().prepare_image(image)


def test_the_encoder_waits_only_for_a_caller_still_on_its_way() -> None:
    inner = Preparing()
    batching = BatchingEmbedder(inner, max_batch=64, max_wait_ms=3_600_000)
    black, other = Image.new("RGB", (32, 32)), make_image(5)
    try:
        with ThreadPoolExecutor(2) as pool:
            slow = pool.submit(batching.embed_images, [black])  # called, still preparing its image
            while batching._callers < 1:  # noqa: SLF001 - the test waits until that call is counted
                threading.Event().wait(0.001)
            quick = pool.submit(batching.embed_images, [other])
            while batching.waits < 1:  # the encoder holds the quick one for its batch-mate
                threading.Event().wait(0.001)
            assert not quick.done()
            inner.go_on.set()
            np.testing.assert_allclose(quick.result(timeout=60), inner.embed_images([other]), atol=1e-6)
            np.testing.assert_allclose(slow.result(timeout=60), inner.embed_images([black]), atol=1e-6)
        assert batching.largest_batch == 2 and batching.batches == 1  # one encoder call for both
        assert batching._callers == 0  # noqa: SLF001 - every answered call is no longer counted
    finally:
        batching.close()
