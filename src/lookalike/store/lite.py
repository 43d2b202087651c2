"""Milvus Lite, the system of record, and the read index derived from it, with one owner.

Every rule that keeps the two equal lives here:

- Milvus Lite gives each written row (and each delete) a sequence number; its next one is
  the **generation** of the collection. The read index is stamped with the generation it
  matches. Before every read the owner compares the two (an attribute read in-process): a
  write by another client, in this process or an earlier one, is seen and repaired.
- Before a write, the ids it touches are appended to a journal beside the index. A write that
  fails half-way, or a crash before the index is saved, is caught up from Milvus by those ids;
  a change nothing explains (a foreign program) rebuilds the partitions whose counts differ,
  or all of them. Either way one log line says so.
- Writes are serialised; reads run on an immutable snapshot, so a search sees one state.
- A process that only reads does not start Milvus Lite: holding the database's lock shared, it
  reads the generation and partitions from Milvus Lite's own files (``litefiles.py``) where they
  prove the saved read index current, and Milvus Lite opens on the first write or the first doubt.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike import durable
from lookalike.durable import crash_point
from lookalike.errors import ConfigError, DatabaseInUseError, StoreError
from lookalike.store import erasure, litefiles, liteprocess
from lookalike.store.base import (
    ID_BATCH,
    INDEX_PROPERTY,
    BaseStore,
    check_k,
    group_by_partition,
    lite_path,
    milvus_errors,
)
from lookalike.store.distinct import DISTINCT_LIMIT, Distinct
from lookalike.store.fusion import RRF, Fusion
from lookalike.store.journal import Journal, chained
from lookalike.store.liteprocess import connect, let_go, lock_holder, release, return_free_memory
from lookalike.store.models import CollectionInfo, Hit, IndexType, Item, PartitionStats
from lookalike.store.partitions import month_name, month_start, next_month
from lookalike.store.readindex import DEFAULT_RECALL, ReadIndex
from lookalike.store.window import EVERYTHING, Window

log = logging.getLogger(__name__)

REBUILD_BATCH = 5000
_NO_KEEPALIVE = {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": 0}
SAVE_EVERY = 50_000
"""Rows written between automatic saves of the read index (a long ingest keeps its heap bounded)."""
FLUSH_EVERY = 10_000
"""Rows written between flushes of Milvus Lite's memtable, which holds about 12 KB a row of 512-d
until flushed, and needs as much again to flush (1 GB at 50K rows, measured)."""


class LiteStore(BaseStore):
    """One collection in a Milvus Lite database (a ``.db`` folder), read through its read index."""

    is_lite = True

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        timeout_s: float = 30.0,
        read_files: bool = False,
        recall: float = DEFAULT_RECALL,
    ) -> None:
        """``read_files``: until the first write or doubt, read Milvus Lite's files instead of starting it,
        holding the database's lock shared (a pymilvus client opened in the same process meanwhile
        would find the database locked, so a process with other clients of it leaves this off).
        ``recall``: the recall@10 its searches promise (``ReadIndex``)."""
        if not uri.endswith(".db"):
            raise ConfigError(
                f"--db {uri!r} is neither a Milvus Lite file (a path ending in .db, e.g. ./lookalike.db) "
                "nor a Milvus server URI (http://host:19530)."
            )
        super().__init__(uri, collection, timeout_s=timeout_s)
        self._path = lite_path(uri)  # resolved once: every read looks Milvus Lite up by it
        self._server_key = os.path.abspath(self._path)
        self._lock = threading.RLock()
        self._read: ReadIndex | None = None
        self._journal = Journal(self._folder() / "journal.jsonl")
        self._unsaved = 0
        self._unflushed = 0
        self._writing = 0
        self._purge: set[str] = set()
        self._files: litefiles.LiteFiles | None = None
        self._files_hold: liteprocess.Files | None = None
        self._files_tried = not read_files
        self._fresh: tuple[Any, int, tuple[str, ...]] | None = None
        """The last (snapshot, generation, partitions) found current by ``_stale``."""
        self.recall = recall

    """Partitions whose Milvus files may still hold deleted rows (rewritten by compact)."""

    # -- connection ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        path = self._path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # An in-process server needs no keepalive; pymilvus' default pings every 10 s, which Milvus
            # Lite answers with GOAWAY "too_many_pings" and, under load, a failed reconnect.
            return connect(
                path, lambda: MilvusClient(uri=str(path), timeout=self.timeout_s, grpc_options=_NO_KEEPALIVE)
            )
        except Exception as exc:
            holder = lock_holder(path)
            if holder is not None:
                raise DatabaseInUseError(
                    f"The database {self.uri} is in use by another process{holder}: Milvus Lite lets one "
                    "process open it at a time. If that is `lookalike serve`, index and search through its "
                    "API (POST /index, POST /search), or stop it and run this command again."
                ) from exc
            raise StoreError(f"Cannot open the Milvus Lite database at {self.uri}: {exc}") from exc

    def _engine(self) -> Any:
        """Milvus Lite's own collection object, in this process (it runs in-process)."""
        from milvus_lite.server_manager import server_manager_instance

        self.client  # noqa: B018 - starts the in-process server
        entry = server_manager_instance._servers.get(self._server_key)
        if entry is None:
            raise StoreError(f"Milvus Lite is not running for {self.uri}.")
        return entry[1].get_collection(self.collection)

    def generation(self) -> tuple[int, tuple[str, ...]]:
        """Milvus' next sequence number and its partitions: any write changes one of them."""
        files = self._on_files()
        if files is not None:
            return files.generation, files.partitions
        engine = self._engine()
        return int(engine._next_seq), tuple(engine.list_partitions())

    def _on_files(self) -> litefiles.LiteFiles | None:
        """Milvus Lite's state as its files hold it, while this process reads them without having started
        Milvus Lite (tried once per store); None once it has (its collection answers from then on)."""
        if self._client is not None:
            return None
        hold = self._files_hold
        if hold is not None:
            if liteprocess.held(hold):
                return self._files
            self._leave_files()  # Milvus Lite started here for another store of this database
            return None
        with self._lock:
            if self._files_tried or self._client is not None:
                return self._files
            self._files_tried = True
            hold = liteprocess.hold_files(self._path)
            if hold is None:
                return None
            files = litefiles.read(self._path, self.collection)
            if files is None:
                liteprocess.let_go_files(self._path, hold)
                return None
            self._files, self._files_hold = files, hold
            return files

    def _leave_files(self) -> None:
        with self._lock:
            hold, self._files_hold, self._files = self._files_hold, None, None
            if hold is not None:
                liteprocess.let_go_files(self._path, hold)

    def _writable(self) -> ReadIndex:
        """The read index, checked against Milvus Lite's own collection: a process that had only read
        its files starts Milvus Lite now (a write needs it), and any difference is repaired first."""
        if self._client is None:
            self._leave_files()
            self.client  # noqa: B018 - starts Milvus Lite
        self._upgrade()
        return self.read_index()

    def require(self) -> None:
        if self._on_files() is None:
            super().require()

    def ensure_partitions(self, names: Sequence[str]) -> None:
        self._writable()  # a write: Milvus Lite opens (a reader of its files could not create them)
        super().ensure_partitions(names)

    def exists(self) -> bool:
        return self._on_files() is not None or super().exists()  # its files name only a collection there

    def _describe(self) -> dict[str, Any]:
        if self._description is None:
            files = self._on_files()
            if files is not None:
                self._description = dict(files.description)
        return super()._describe()

    def partitions(self) -> list[str]:
        files = self._on_files()
        if files is not None:
            return list(files.partitions)
        return super().partitions()

    def info(self) -> CollectionInfo:
        """Counts per partition and per source, and the recall searches promise and were measured to
        keep, from the read index (nothing to load in Milvus Lite)."""
        info = self._info()
        return dataclasses.replace(info, search=self.read_index().recall_summary())

    @property
    def key(self) -> tuple[str, str]:
        """What names this store in the process: its database (resolved) and collection."""
        return self._server_key, self.collection

    def close(self) -> None:
        """One holder lets go (``open_store`` hands the same store to each); the last one saves the read
        index and lets go of the database, and the last client to close stops Milvus Lite, so that
        another process can open it."""
        let_go(self.key, self, self._close)

    def _close(self) -> None:
        with self._lock:
            opened = self._client is not None
            if self._read is not None and opened:
                self._save()
            if self._read is not None:
                self._read.release()  # now, not in a timer: the files of what it replaced go too
            self._read = None
            self._leave_files()
            super().close()
            if opened:
                release(self._path)

    # -- lifecycle -----------------------------------------------------------------------------

    def _create(self, dim: int, index: IndexType, params: dict[str, Any], properties: dict[str, str]) -> None:
        # Searches are answered by the read index, which builds the index asked for; Milvus Lite
        # keeps none (a collection without one needs no load and holds no second copy).
        properties = {**properties, INDEX_PROPERTY: json.dumps({"type": index.value, "params": params})}
        with milvus_errors("create the collection"):
            self.client.create_collection(self.collection, schema=self._schema(dim))
            self.client.alter_collection_properties(self.collection, properties)
        self._reset_folder()

    def drop(self) -> None:
        with self._lock:
            super().drop()
            self._reset_folder()

    def _opens_milvus(self) -> bool:
        return self._on_files() is None

    def _upgraded(self) -> None:
        # The collection is a new one (its copy): its read index is rebuilt from it.
        super()._upgraded()
        if self._read is not None:
            self._read.release()
        self._reset_folder()

    def _reset_folder(self) -> None:
        import shutil

        self._read = None
        shutil.rmtree(self._folder(), ignore_errors=True)

    def _folder(self) -> Path:
        return self._path / "lookalike-index" / self.collection

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self.require()
        with milvus_errors("load the collection"):
            state = self.client.get_load_state(self.collection).get("state")
            if "Loaded" not in str(state):  # collections made before the read index have a FLAT index
                self.client.load_collection(self.collection)
        self._loaded = True
        return_free_memory()  # Milvus Lite read every segment file: 420 MB of buffers freed at 1M

    # -- the read index ------------------------------------------------------------------------

    def read_index(self) -> ReadIndex:
        """The read index, opened on first use and brought up to Milvus' generation on every call.

        While this store writes, readers get the last published snapshot at once (one whole state,
        from before the write) instead of waiting: a drop or an ingest chunk never stalls searches.
        """
        read = self._read
        if read is not None and (self._writing or not self._stale()):
            return read
        with self._lock:
            opening = self._read is None
            if self._read is None:
                if self._on_files() is None:
                    self._ensure_loaded()
                index_type, params = self.index()
                read = ReadIndex(self._folder(), self.dim(), index_type, params, self.recall)
                state = read.load()
                if self._on_files() is not None and not self._proven(read, state):
                    self._leave_files()
                    self._ensure_loaded()  # Milvus Lite opens, and decides what the read index lacks
                self._read = read
                self._purge = set((state or {}).get("purge", []))
                self._finish_purges()
                if state is None:
                    self._rebuild(None, "there was no usable saved copy")
            if self._stale():
                self._repair()
            if opening:
                self._finish_erasure()
            return self._read

    def _proven(self, read: ReadIndex, state: dict[str, Any] | None) -> bool:
        """Whether Milvus Lite's files alone prove the saved read index current: its generation and
        partitions, and nothing of lookalike's own left unfinished (a journaled write, an erasure, a
        temporary file). Anything else is decided with Milvus Lite open."""
        files = self._on_files()
        if files is None or state is None:
            return False
        snapshot = read.snapshot
        if snapshot.generation != files.generation or not set(snapshot.shards) <= set(files.partitions):
            return False
        if self._journal.since(snapshot.generation):
            return False
        folder = self._folder()
        leftovers = [
            p.name
            for p in folder.iterdir()
            if p.name.startswith("purge-")
            or p.name == erasure.PLAN
            or p.name.endswith(durable.TEMPORARY_SUFFIX)
        ]
        return not leftovers

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Mark a write in progress (under the store's lock): readers keep the published snapshot."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1

    def _stale(self) -> bool:
        assert self._read is not None
        seq, partitions = self.generation()
        snapshot = self._read.snapshot
        fresh = self._fresh
        if fresh is not None and fresh[0] is snapshot and fresh[1] == seq and fresh[2] == partitions:
            return False  # what every search asks: the same snapshot, generation and partitions as last time
        stale = snapshot.generation != seq or not set(snapshot.shards) <= set(partitions)
        self._fresh = None if stale else (snapshot, seq, partitions)
        return stale

    def _repair(self) -> None:
        """Bring the read index to what Milvus holds; one log line says how."""
        assert self._read is not None
        read = self._read
        seq, partitions = self.generation()
        gone = [name for name in read.snapshot.shards if name not in partitions]
        if gone:
            read.drop(gone, read.snapshot.generation)
        pending = self._journal.since(read.snapshot.generation)
        ids = [i for entry in pending for i in entry["ids"]]
        if ids:
            self._catch_up(ids)
        ours = read.snapshot.rows()
        differ = [name for name in partitions if self._partition_rows(name) != ours.get(name, 0)]
        explained = chained(pending, read.snapshot.generation, seq)
        if not differ and not explained and read.snapshot.generation != seq:
            differ = list(partitions)  # a change that counts do not show: check everything
        if differ:
            self._purge |= set(differ)
            self._rebuild(
                differ, "a write did not finish" if pending else "Milvus was changed by another program"
            )
        elif ids:
            log.warning(
                "read index of %s: caught up %d items of an unfinished write", self.collection, len(ids)
            )
        elif gone:
            log.warning(
                "read index of %s: dropped partitions removed elsewhere: %s", self.collection, ", ".join(gone)
            )
        read.publish(read.snapshot.shards, seq)
        self._save()

    def _catch_up(self, ids: Sequence[int]) -> None:
        """Make these ids in the read index what Milvus holds (present with its values, or absent)."""
        assert self._read is not None
        stored = self._milvus_get(ids, with_vector=True)
        items = list(stored.values())
        deletes = [i for i in ids if i not in stored]
        by_month: dict[str, list[Item]] = {}
        for item in items:  # rows Milvus holds, even one dated outside what lookalike writes
            by_month.setdefault(month_name(item.created_at), []).append(item)
        self._read.apply(items, deletes, by_month, self._read.snapshot.generation)

    def _rebuild(self, partitions: Sequence[str] | None, why: str) -> None:
        assert self._read is not None
        read = self._read
        names = list(self.partitions() if partitions is None else partitions)
        total = 0
        for name in names:
            # One row per id: the first open of Milvus Lite after a kill during its flush can
            # replay a row from both its segment file and its write-ahead log (the next open
            # answers each once). A doubled row must not become a doubled hit for good.
            rows: dict[int, Item] = {}
            for _, batch in self._milvus_items(batch_size=REBUILD_BATCH, with_vector=True, partitions=[name]):
                rows.update((item.id, item) for item in batch)
            items = list(rows.values())
            read.replace_shard(name, items, read.snapshot.generation)
            total += len(items)
        if total or partitions is not None:
            which = "all partitions" if partitions is None else ", ".join(names)
            log.warning(
                "read index of %s: rebuilt %s from Milvus (%d items): %s", self.collection, which, total, why
            )
        read.publish(read.snapshot.shards, self.generation()[0])
        self._save()

    def _save(self) -> None:
        assert self._read is not None
        self._unsaved = 0
        self._read.save({"partitions": list(self.generation()[1]), "purge": sorted(self._purge)})
        self._journal.clear()

    # -- writes ----------------------------------------------------------------------------------

    def insert(self, items: Sequence[Item]) -> int:
        """Write items into their monthly partitions; an id already stored is replaced."""
        return self.upsert(items)

    def upsert(self, items: Sequence[Item]) -> int:
        """Write items, replacing stored ones with the same id wherever they are."""
        if not items:
            return 0
        self.require()
        prepared = list({item.id: item for item in self._prepare(items)}.values())
        with self._lock:
            read = self._writable()
            where = read.locate([item.id for item in prepared])
            by_partition = group_by_partition(prepared)
            moved: dict[str, list[int]] = {}
            for name, group in by_partition.items():
                for item in group:
                    if item.id in where and where[item.id] != name:
                        moved.setdefault(where[item.id], []).append(item.id)
            self._purge |= {where[item.id] for item in prepared if item.id in where}
            seqs = len(prepared) + sum(_calls(ids) for ids in moved.values())
            self._write(
                [item.id for item in prepared],
                seqs,
                lambda: self._upsert_rows(by_partition, moved),
                lambda generation: read.apply(prepared, [], by_partition, generation),
            )
        return len(prepared)

    def _upsert_rows(self, by_partition: dict[str, list[Item]], moved: dict[str, list[int]]) -> None:
        for old, ids in moved.items():
            self._delete_rows(ids, old)
        if moved:
            self._flush_tombstones()
        for name, group in by_partition.items():
            # Milvus Lite keeps the newest version of a primary key, so an insert replaces.
            self._write_rows(name, group, upsert=False)

    def _flush_tombstones(self) -> None:
        # Milvus Lite forgets an unflushed tombstone when its key is inserted again (in another
        # partition, say), and the old row comes back to partition-scoped reads: flush deletes.
        with milvus_errors("flush"):
            self.client.flush(self.collection)

    def delete(self, ids: Sequence[int], *, erase: bool = False) -> int:
        """Delete these ids; returns how many were stored.

        ``erase``: also rewrite their partitions so that their bytes leave every file. The plan is
        recorded before Milvus sees the delete, so a kill at any instant is finished on the next open.
        """
        if not ids:
            return 0
        self.require()
        with self._lock:
            read = self._writable()
            where = read.locate(ids)
            if not where:
                return 0
            by_partition: dict[str, list[int]] = {}
            for item_id, name in where.items():
                by_partition.setdefault(name, []).append(item_id)
            self._purge |= set(by_partition)
            if erase:
                erasure.plan(self._folder(), sorted(by_partition), self.partitions)

            def to_milvus() -> None:
                for name, group in by_partition.items():
                    self._delete_rows(group, name)
                self._flush_tombstones()

            self._write(
                list(where),
                sum(_calls(group) for group in by_partition.values()),
                to_milvus,
                lambda generation: read.apply([], list(where), {}, generation),
            )
            if erase:
                self.flush()
                self.compact(sorted(by_partition))
            return len(where)

    def _write(self, ids: Sequence[int], seqs: int, to_milvus: Any, to_index: Any) -> None:
        """One write: journal, Milvus, then the read index; a failure is caught up at once."""
        assert self._read is not None
        start = self._read.snapshot.generation
        self._journal.note(start, seqs, ids)
        with self.writing():
            try:
                to_milvus()
            except BaseException:
                self._repair()  # Milvus may hold part of the write: make the index match it
                raise
            seq = self.generation()[0]
            to_index(start + seqs)
        if seq != start + seqs:  # another client wrote meanwhile: look at everything
            self._repair()
        self._unsaved += len(ids)
        self._unflushed += len(ids)
        if self._unsaved >= SAVE_EVERY:  # new rows live on the heap until saved (then mapped)
            self.flush()
        elif self._unflushed >= FLUSH_EVERY:
            self._flush_milvus()

    def drop_partitions(self, names: Sequence[str]) -> None:
        """Drop whole partitions and their items: one shard each leaves the read index."""
        self.require()
        with self._lock:
            read = self._writable()
            dropped: list[str] = []
            with self.writing():
                try:
                    for name in names:
                        self._drop_milvus_partition(name)
                        dropped.append(name)
                finally:  # what Milvus dropped leaves the read index, even if a later drop failed
                    read.drop(dropped, read.snapshot.generation)
                    self._purge -= set(dropped)
            self._save()

    def flush(self) -> None:
        with self._lock:
            if self._read is not None and self._client is None:
                self._writable()  # read from Milvus Lite's files so far: it opens, and checks the index first
            self._flush_milvus()  # hands freed memory back too
            if self._read is not None:
                self._read.seal()
                self._save()

    def _flush_milvus(self) -> None:
        with milvus_errors("flush"):
            self.client.flush(self.collection)
        self._unflushed = 0
        return_free_memory()

    # -- reads -----------------------------------------------------------------------------------

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        return set(self.read_index().locate(ids)) if ids else set()

    def get(self, ids: Sequence[int], *, with_vector: bool = False) -> list[Item]:
        return self.read_index().get(ids, with_vector=with_vector) if ids else []

    def search(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        k: int = 10,
        window: Window = EVERYTHING,
        params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Top-k by cosine for each query row, inside the window (``params``: ``ef`` for HNSW)."""
        vectors = self._queries(vectors, k)
        ef = int((params or {}).get("ef", 0)) or None
        return self.read_index().search(vectors, k, window, ef=ef)

    def keyword_search(self, text: str, *, k: int = 10, window: Window = EVERYTHING) -> list[Hit]:
        """Top-k by BM25 over name, category and tags, inside the window (``keywords``)."""
        check_k(k)
        return self.read_index().keyword_search(text, k, window)

    def hybrid_search(
        self,
        vector: npt.NDArray[np.float32],
        text: str,
        *,
        k: int = 10,
        fusion: Fusion = RRF,
        window: Window = EVERYTHING,
        params: dict[str, Any] | None = None,
    ) -> list[Hit]:
        """The k best of the vector hits and the keyword hits, fused (``fusion``), inside the window."""
        vectors = self._queries(vector, k)
        ef = int((params or {}).get("ef", 0)) or None
        return self.read_index().hybrid_search(vectors[0], text, k, fusion, window, ef=ef)

    def iter_items(
        self, *, batch_size: int = 1000, with_vector: bool = True, window: Window = EVERYTHING
    ) -> Iterator[list[Item]]:
        """Every stored item in the window, in batches, all from one state of the collection."""
        yield from self.read_index().iter_items(batch_size=batch_size, with_vector=with_vector, window=window)

    def count(self, window: Window = EVERYTHING) -> int:
        return self.read_index().count(window)

    def sources(self) -> dict[str, int]:
        return self.read_index().sources()

    def distinct(self, names: Sequence[str], *, limit: int = DISTINCT_LIMIT) -> dict[str, Distinct]:
        """Each filter field's most frequent values and their counts, from the read index."""
        return self.read_index().distinct(names, limit)

    def has_text(self, name: str) -> bool:
        return self.read_index().has_text(name)

    # -- erasure ---------------------------------------------------------------------------------

    def compact(self, partitions: Sequence[str] | None = None) -> int:
        """Rewrite storage so that deleted rows' bytes are gone from every file; returns partitions rewritten.

        Milvus Lite keeps deleted and replaced rows in its segment files until its own compaction,
        which it runs only now and then. Each partition that has lost rows since the last
        compaction (or each of ``partitions``) is rewritten from its live rows (erasure.py), and the
        read index's shard is rewritten without tombstones.
        """
        self.require()
        folder, milvus = self._folder(), _MilvusPartitions(self)
        with self._lock:
            read = self._writable()  # fresh first, then readers keep their snapshot while this rewrites
            with self.writing():
                wanted = self._purge if partitions is None else set(partitions)
                todo = sorted(wanted & set(self.partitions()))
                if todo:
                    erasure.plan(folder, todo, self.partitions)
                for name in todo:
                    erasure.rewrite(folder, milvus, name)
                    read.purge(name)
                    read.publish(read.snapshot.shards, self.generation()[0])
                    self._purge.discard(name)
                    self._save()
                    crash_point("erase.partition_done")
                read.release()  # the replaced segments' files are deleted now, not after a grace period
                erasure.remove_plan(folder)
                if partitions is not None:
                    self._save()
            return len(todo)

    def _finish_purges(self) -> None:
        erasure.finish_purges(self._folder(), _MilvusPartitions(self))

    def _finish_erasure(self) -> None:
        """Rewrite the partitions of a compaction plan that a kill interrupted, then drop the plan."""
        folder = self._folder()
        names = erasure.planned(folder, self.partitions)
        if not erasure.has_plan(folder):
            return
        log.warning(
            "read index of %s: finishing an interrupted erasure of %s",
            self.collection,
            ", ".join(names) or "nothing",
        )
        self.compact(names)

    def partition_stats(self) -> list[PartitionStats]:
        """Rows per partition as the read index holds them (equal to Milvus once it is opened).

        The read index is opened first, so that an interrupted erasure or write is finished
        before anything is counted: counts and sources always describe one state.
        """
        self.require()
        rows = self.read_index().snapshot.rows()
        stats = []
        for name in self.partitions():
            start = month_start(name)
            end = next_month(start) if start is not None else None
            stats.append(PartitionStats(name, rows.get(name, 0), start, end))
        return stats


def _calls(ids: Sequence[int]) -> int:
    """Delete calls (each one Milvus Lite sequence number) for this many ids."""
    return -(-len(ids) // ID_BATCH)


class _MilvusPartitions:
    """What erasure.py rewrites a partition with: Milvus' own partitions of one Lite store."""

    def __init__(self, store: LiteStore) -> None:
        self._store = store
        self.collection = store.collection

    def names(self) -> list[str]:
        return self._store.partitions()

    def live_rows(self, name: str) -> list[Item]:
        rows: dict[int, Item] = {}  # one per id (see LiteStore._rebuild)
        for _, batch in self._store._milvus_items(
            batch_size=erasure.REBUILD_BATCH, with_vector=True, partitions=[name]
        ):
            rows.update((item.id, item) for item in batch)
        return list(rows.values())

    def dim(self) -> int:
        return self._store.dim()

    def drop(self, name: str) -> None:
        self._store._drop_milvus_partition(name)

    def create(self, name: str) -> None:
        self._store._ensure_partition(name)

    def write(self, name: str, items: Sequence[Item]) -> None:
        self._store._write_rows(name, items, upsert=False)

    def flush(self) -> None:
        with milvus_errors("flush"):
            self._store.client.flush(self.collection)
