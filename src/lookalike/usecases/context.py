"""The one context every use case shares: the settings, and the embedder, detector and store built lazily.

Nothing heavy is built (or imported) until a use case asks for it: ``stats`` opens only the
store, and an argument error is raised before either exists. The embedder is built for the
collection: from its record of how it was embedded (usecases/embedding.py), never another model.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from lookalike.backend import Backend

if TYPE_CHECKING:
    from lookalike.config import Settings
    from lookalike.embed import Detector, Embedder
    from lookalike.ingest import FetchPolicy
    from lookalike.store import Store
    from lookalike.workflow import Workflow


class Context:
    """Settings plus the pieces built from them on first use.

    Args:
        settings: where the data lives and which model to use.
        embedder: injected in tests; otherwise built on first use, with the model the collection
            records (the settings' model where it has no record; a different one is refused).
        store: injected in tests; otherwise opened from the settings on first use (the process's
            one store of that collection, shared with any other context that opens it).
        detector: injected in tests; otherwise built from the settings when --detect first asks.
        read_files: a Milvus Lite store this context opens reads Milvus Lite's own files until its first
            write, instead of starting Milvus Lite (a command's process, the database's only client in
            it: ``LiteStore``). A server leaves it off: it writes while other processes may read.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: Store | None = None,
        detector: Detector | None = None,
        read_files: bool = False,
    ) -> None:
        self.settings = settings
        self.read_files = read_files
        self._embedder = embedder
        self.embedder_injected = embedder is not None
        self._detector = detector
        self._store = store
        self._store_injected = store is not None
        self._workflow: Workflow | None = None
        self._building = threading.Lock()  # one store and one embedder, however many threads ask first
        self.binding = threading.Lock()
        """Held while usecases/embedding.py chooses the model or checks it against the collection."""
        self.bound_model = ""
        """The collection's model record the built embedder was last checked against."""
        self.embedded_with: Settings | None = None
        """The settings the embedder was built from (``settings`` may change later, e.g. its threads)."""

    def open_store(self, uri: str, collection: str) -> Store:
        """A store with the settings' credentials, TLS and timeouts (Lite: a generous readiness limit)."""
        from lookalike.store import open_store

        settings = self.settings
        return open_store(
            uri,
            collection,
            token=settings.token,
            user=settings.user,
            password=settings.password,
            timeout_s=settings.store_timeout_s(uri),
            tls=settings.tls(),
            read_files=self.read_files,
            recall=settings.search_recall,
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._building:
                if self._store is None:
                    self._store = self.open_store(self.settings.db, self.settings.collection)
        return self._store

    @property
    def workflow(self) -> Workflow:
        """The collection's side store of policies, flags, reviews, hashes, claims, webhook events and waves
        (SQLite), opened on first use."""
        if self._workflow is None:
            from pathlib import Path

            from lookalike.workflow import Workflow

            with self._building:  # one per context: it owns the banks' index (a server builds it in a thread)
                if self._workflow is None:
                    path = self.settings.workflow_path()
                    if self.settings.backend is Backend.SERVER and not self.settings.workflow_db:
                        Path(path).parent.mkdir(parents=True, exist_ok=True)  # the per-user data folder
                    # Events are written for the webhook URLs configured here (a bad setting fails now).
                    self._workflow = Workflow(path, webhooks=self.settings.webhook_targets())
        return self._workflow

    @property
    def embedder(self) -> Embedder:
        """The model of this context's collection, built on first use (see ``embedding.bind``)."""
        if self._embedder is None:
            from lookalike.usecases.embedding import bind

            bind(self)  # the collection's own model, or a clear error for another one; builds it
        assert self._embedder is not None
        return self._embedder

    def build_embedder(self) -> Embedder:
        """Build the embedder the settings name, once (``embedding.bind`` calls it, having set them)."""
        from lookalike.embed import create_embedder

        with self._building:
            if self._embedder is None:
                self._embedder = create_embedder(self.settings)
                self.embedded_with = self.settings
            return self._embedder

    def batch_queries(self, max_batch: int, max_wait_ms: float) -> None:
        """Encode concurrent calls together from now on (the API server); 1 keeps one call at a time."""
        from lookalike.embed.batcher import BatchingEmbedder

        if max_batch > 1 and not isinstance(self._embedder, BatchingEmbedder):
            self._embedder = BatchingEmbedder(self.embedder, max_batch=max_batch, max_wait_ms=max_wait_ms)

    @property
    def has_embedder(self) -> bool:
        """Whether an embedder was injected or built (without building one)."""
        return self._embedder is not None

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            from lookalike.embed import create_detector

            self._detector = create_detector(self.settings)
        return self._detector

    @property
    def max_bytes(self) -> int:
        return int(self.settings.max_download_mb * 1e6)

    @property
    def policy(self) -> FetchPolicy:
        """How this process reads paths and URLs (ingest/policy.py); the API passes its own."""
        from lookalike.ingest import FetchPolicy

        return FetchPolicy.from_settings(self.settings)

    def fetch(self, uri: str) -> bytes:
        """The bytes of a local file or URL, under the fetch policy."""
        return self.policy.read(uri).data

    def close(self) -> None:
        if self._workflow is not None:
            self._workflow.close()
        if self._embedder is not None:
            self._unbatch()
        if self._store is not None:
            store = self._store
            if not self._store_injected:
                self._store = None  # let go once; a later use opens it again
            store.close()

    def _unbatch(self) -> None:
        """A batching embedder's encoder thread stops; the model stays, for a later server on this context."""
        from lookalike.embed.batcher import BatchingEmbedder

        if isinstance(self._embedder, BatchingEmbedder):
            self._embedder.close()
            self._embedder = self._embedder.inner
