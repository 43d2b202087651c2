"""The composition root: builds the embedder and the store once per process and answers every command."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.config import Settings
from lookalike.embed import Detector, Embedder, create_detector, create_embedder, is_image_only
from lookalike.embed.detect import crop, largest
from lookalike.embed.finetune import FinetuneResult, Options, Pair, finetune
from lookalike.embed.openclip import MULTILINGUAL_HINT
from lookalike.errors import ConfigError, ImageError, ItemNotFoundError
from lookalike.ingest import (
    FetchPolicy,
    Ingestor,
    IngestReport,
    content_hash,
    decode_image,
    encode_jpeg,
    image_media_type,
    open_listing,
    shrink,
)
from lookalike.ingest.kept import keep, stored_image
from lookalike.ingest.sources import Inputs, Listing, Skipped
from lookalike.quality import EvalQuery, EvalReport, evaluate, load_eval_queries
from lookalike.quality.demo import DemoData, write_demo_data
from lookalike.queries import (
    Classified,
    Query,
    SearchResult,
    day_window,
    mostly_non_latin,
    parse_index_params,
)
from lookalike.scan import (
    Group,
    LabelSet,
    LabelSpec,
    ScanRow,
    check_format,
    find_duplicates,
    load_labels,
    parse_labels,
    write_duplicates_report,
    write_scan_report,
)
from lookalike.scan import scan as scan_items
from lookalike.scan.thumbs import write_grid
from lookalike.store import (
    CollectionInfo,
    IndexType,
    Item,
    MilvusStore,
    PartitionStats,
    partitions_before,
)
from lookalike.store.backup import bulk_copy, copy_collection, export_parquet, import_parquet
from lookalike.store.models import Box, parse_box

Progress = Callable[[int], None]
EVAL_DEPTH = 100  # hits ranked per evaluation query: MRR counts a first relevant item up to here

# The types callers receive back (the API's jobs hold ingest reports and skipped files).
__all__ = [
    "Classified",
    "DemoData",
    "EvalReport",
    "FinetuneResult",
    "IngestReport",
    "Lookalike",
    "Query",
    "SearchResult",
    "Skipped",
    "Options",
    "day_window",
    "demo_data",
    "parse_box",
    "parse_index_params",
]


def demo_data(out_dir: str, n: int = 500, seed: int = 0, progress: Progress | None = None) -> DemoData:
    """Write the synthetic captioned catalog and its evaluation queries (``lookalike demo-data``)."""
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}.")
    return write_demo_data(out_dir, n, seed, progress=progress)


class Lookalike:
    """Index, search, stats, export and import over one collection.

    Args:
        settings: where the data lives and which model to use.
        embedder: injected in tests; otherwise built from the settings on first use.
        store: injected in tests; otherwise built from the settings.
        detector: injected in tests; otherwise built from the settings when --detect first asks.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: MilvusStore | None = None,
        detector: Detector | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._detector = detector
        self.store = store or self._open_store(settings.db, settings.collection)

    def _open_store(self, uri: str, collection: str) -> MilvusStore:
        """A store with the settings' credentials, TLS, timeouts and local-copy choice."""
        settings = self.settings
        return MilvusStore(
            uri,
            collection,
            token=settings.token,
            user=settings.user,
            password=settings.password,
            local_index=settings.local_index,
            timeout_s=settings.timeout_s,
            tls=settings.tls(),
        )

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings)
        return self._embedder

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = create_detector(self.settings)
        return self._detector

    @property
    def _max_bytes(self) -> int:
        return int(self.settings.max_download_mb * 1e6)

    @property
    def policy(self) -> FetchPolicy:
        """How this process reads paths and URLs (ingest/policy.py); the API passes its own."""
        return FetchPolicy.from_settings(self.settings)

    def _fetch(self, uri: str) -> bytes:
        """The bytes of a local file or URL, under the fetch policy."""
        return self.policy.read(uri).data

    def close(self) -> None:
        self.store.close()

    # -- index ---------------------------------------------------------------------------------

    def index(
        self,
        path: str,
        *,
        source: str | None = None,
        index: str = IndexType.HNSW,
        index_params: dict[str, Any] | None = None,
        on_start: Callable[[int], None] | None = None,
        progress: Progress | None = None,
        detect: bool = False,
    ) -> IngestReport:
        """Index a folder, an image file or a catalog; returns the report of what was done and skipped.

        With ``detect``, every object the detector finds also becomes an item of its own.
        """
        listing = open_listing(path, source)
        return self._ingest(listing, index, index_params, on_start, progress, detect)

    def _ingest(
        self,
        listing: Listing | Inputs,
        index: str,
        index_params: dict[str, Any] | None,
        on_start: Callable[[int], None] | None,
        progress: Progress | None,
        detect: bool = False,
        policy: FetchPolicy | None = None,
    ) -> IngestReport:
        self.store.validate_index(index)
        embedder = self.embedder
        if self.store.exists():
            self.store.check_dim(embedder.dim)
            if detect:
                self.store.require_crop_fields()
        detector = self.detector if detect else None
        if detector is not None:
            detector.load()  # missing weights stop the run here, before anything is written
        # Load before creating anything: a model that cannot load must not leave behind an
        # empty collection of its dimension.
        embedder.load()
        self.store.ensure(embedder.dim, index=index, index_params=index_params, model=embedder.name)
        if on_start:
            on_start(listing.count())
        ingestor = Ingestor(
            embedder,
            self.store,
            chunk_size=max(embedder.batch_size, 16),
            workers=self.settings.workers,
            max_pixels=self.settings.max_image_pixels,
            max_bytes=self._max_bytes,
            timeout_s=self.settings.fetch_timeout_s,
            detector=detector,
            fetcher=(policy or self.policy).read,
            keep=lambda sha, data: keep(self.settings.uploads_path(), sha, data),
        )
        return ingestor.run(listing, progress)

    # -- search --------------------------------------------------------------------------------

    def _query_vector(self, query: Query) -> tuple[np.ndarray, list[int], Box | None]:
        given = [v is not None for v in (query.text, query.image, query.image_bytes, query.id)]
        if sum(given) != 1:
            raise ConfigError("Give exactly one of --text, --image or --id.")
        if query.id is not None:
            found = self.store.get([query.id], with_vector=True)
            if not found or found[0].vector is None:
                raise ItemNotFoundError(f"No stored item has the id {query.id}.")
            return found[0].vector[None, :], [query.id], None
        embedder = self.embedder
        if query.text is not None:
            if not query.text.strip():
                raise ConfigError("--text must not be empty.")
            return embedder.embed_texts([query.text]), [], None
        data = query.image_bytes
        if data is None:
            assert query.image is not None
            data = self._read_image(query.image, public_only=query.public_only)
        image = decode_image(data, max_pixels=self.settings.max_image_pixels).image
        box = query.box
        if box is None and query.detect:
            found_box = largest(self.detector.detect(image))
            box = found_box.box if found_box else None
        if box is not None:
            image = crop(image, box)
        return embedder.embed_images([image]), [], box

    def _text_search_problem(self) -> str | None:
        """Why a text search of this collection with this model cannot work, or None."""
        stored = self.store.model()
        if stored and is_image_only(stored):
            return (
                f"The collection '{self.store.collection}' was indexed with {stored}, which embeds images "
                "only: search it by --image or --id, or index it again with a CLIP model for text search."
            )
        if not self.embedder.supports_text:
            return (
                f"The model {self.embedder.name} embeds images only: search by --image or --id, "
                "or use a CLIP model for text search."
            )
        return None

    def _read_image(self, location: str, *, public_only: bool) -> bytes:
        if public_only:
            return FetchPolicy.from_settings(self.settings, server=True).read(location).data
        if "://" not in location:
            path = Path(location).expanduser()
            if not path.is_file():
                raise ConfigError(f"Query image not found: {location}")
            location = str(path)
        return self._fetch(location)

    def search(self, query: Query) -> SearchResult:
        """Top-k stored items for a text, an image or a stored id, inside the filters.

        ``took_ms`` counts embedding the query and searching; loading the model once per
        process does not count.
        """
        since, until = day_window(query.since, query.until)
        if any(not s.strip() for s in query.sources):
            raise ConfigError("--source must not be empty.")
        self.store.require()
        problem = self._text_search_problem() if query.text is not None else None
        if problem:
            raise ConfigError(problem)
        if query.id is None:
            self.store.check_dim(self.embedder.dim)
            self.embedder.load()
        if query.box is not None and query.image is None and query.image_bytes is None:
            raise ConfigError("--box and --detect choose a part of a query image: give --image too.")
        if query.detect and query.box is None:
            self.detector.load()  # like the model: loading once per process is not the query's time
        started = time.perf_counter()
        vector, exclude, query_box = self._query_vector(query)
        hits = self.store.search(
            vector,
            k=query.k,
            sources=query.sources or None,
            since=since,
            until=until,
            exclude_ids=exclude,
            params=dict(query.search_params) or None,
        )[0]
        warnings = []
        if query.text is not None and not self.embedder.multilingual and mostly_non_latin(query.text):
            warnings.append(
                f"The query is mostly in a non-Latin script, but {self.embedder.name} was trained on English "
                f"text, so the results will be poor. Use a multilingual model: {MULTILINGUAL_HINT} "
                "(pip install 'lookalike[multilingual]')."
            )
        if query.id is None:
            stored_model = self.store.model()
            if stored_model and stored_model != self.embedder.name:
                warnings.append(
                    f"The collection was indexed with {stored_model}, but this search uses "
                    f"{self.embedder.name}: scores are only meaningful with the same model."
                )
        if query.detect and query.box is None and query_box is None:
            warnings.append(
                "The detector found no object above the minimum score and size in the query image, "
                "so the whole image was searched."
            )
        return SearchResult((time.perf_counter() - started) * 1000, hits, warnings, query_box)

    def write_grid(self, result: SearchResult, path: str, title: str) -> None:
        """Draw the hits as a PNG grid: thumbnail, name and score, under a title with the query and its time."""
        cells = [
            (hit.item.uri, hit.item.name or hit.item.item_id, f"{hit.score:.3f}  ·  {hit.item.source}")
            for hit in result.hits
        ]
        write_grid(path, f"{title}  ·  {len(result.hits)} hits in {result.took_ms:.1f} ms", cells)

    def stats(self) -> CollectionInfo:
        return self.store.info()

    # -- items -----------------------------------------------------------------------------

    def item(self, item_id: int) -> Item:
        found = self.store.get([item_id])
        if not found:
            raise ItemNotFoundError(f"No stored item has the id {item_id}.")
        return found[0]

    def item_image(self, item_id: int, size: int | None = None) -> tuple[bytes, str]:
        """A stored item's image (or a thumbnail of longest side ``size``) and its media type.

        Only the uri stored with the item is read: no caller's value becomes a path.
        """
        item = self.item(item_id)
        data = stored_image(
            item.uri,
            item.parent_sha256 or item.sha256,
            self.settings.uploads_path(),
            max_bytes=self._max_bytes,
            timeout_s=self.settings.fetch_timeout_s,
        )
        if size is None:
            return data, image_media_type(data)
        return encode_jpeg(shrink(data, size, max_pixels=self.settings.max_image_pixels)), "image/jpeg"

    def save_upload(self, data: bytes) -> str:
        """Keep an uploaded image under the upload folder, named by its content; returns the path."""
        decode_image(data, max_pixels=self.settings.max_image_pixels)  # refuse non-images before keeping them
        folder = Path(self.settings.uploads_path())
        folder.mkdir(parents=True, exist_ok=True)
        suffix = {"image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}.get(
            image_media_type(data), ".jpg"
        )
        path = folder / f"{content_hash(data)}{suffix}"
        if not path.exists():
            path.write_bytes(data)
        return str(path.resolve())

    def check_inputs(
        self, inputs: Sequence[str], source: str | None = None, policy: FetchPolicy | None = None
    ) -> None:
        """Refuse now inputs the policy forbids (PathRefusedError) or that do not exist (ConfigError)."""
        (policy or self.policy).check_inputs(inputs)
        Inputs(inputs, source)

    def index_inputs(
        self,
        inputs: Sequence[str],
        *,
        source: str | None = None,
        on_start: Callable[[int], None] | None = None,
        progress: Progress | None = None,
        detect: bool = False,
        policy: FetchPolicy | None = None,
    ) -> IngestReport:
        """Index several paths and URLs in one run (the API's POST /index, with its policy)."""
        listing = Inputs(inputs, source)
        return self._ingest(listing, IndexType.HNSW, None, on_start, progress, detect, policy)

    # -- export / import ---------------------------------------------------------------------

    def export(self, path: str, progress: Progress | None = None) -> int:
        """Write every item and its vector to a Parquet file; returns the row count."""
        return export_parquet(self.store, path, progress)

    def import_(self, path: str, progress: Progress | None = None) -> tuple[int, int]:
        """Restore a Parquet export without re-embedding; returns (imported, already present)."""
        return import_parquet(self.store, path, progress)

    def migrate(
        self,
        target_uri: str,
        target_collection: str | None = None,
        progress: Progress | None = None,
        *,
        bulk_dir: str | None = None,
    ) -> tuple[int, int]:
        """Copy this collection to another Milvus (e.g. Lite → a server); returns (copied, already there).

        With ``bulk_dir`` the copy goes through Parquet files there and the server's bulk import
        (a new collection only; the server must be able to read the folder).
        """
        target = self._open_store(target_uri, target_collection or self.settings.collection)
        if target.uri == self.store.uri and target.collection == self.store.collection:
            raise ConfigError("migrate needs a different target: another --to database or --to-collection.")
        try:
            if bulk_dir is not None:
                return bulk_copy(self.store, target, bulk_dir, progress), 0
            return copy_collection(self.store, target, progress)
        finally:
            target.close()

    # -- retrieval quality ---------------------------------------------------------------------

    def evaluate(
        self,
        queries_path: str,
        *,
        on_start: Callable[[int], None] | None = None,
        progress: Progress | None = None,
    ) -> EvalReport:
        """Recall@1/5/10, MRR and nDCG@10 of the collection's answers to the queries in a CSV file."""
        queries = load_eval_queries(queries_path)
        self.store.require()
        text_supported = self._text_search_problem() is None
        notes: list[str] = []
        if on_start:
            on_start(len(queries))

        def ranked(query: EvalQuery) -> list[str]:
            text, image = (query.query, None) if query.kind == "text" else (None, query.query)
            result = self.search(Query(text=text, image=image, k=EVAL_DEPTH))
            notes.extend(w for w in result.warnings if w not in notes)
            return [hit.item.item_id for hit in result.hits]

        report = evaluate(queries, ranked, text_supported=text_supported, progress=progress)
        report.notes.extend(notes)
        return report

    def training_pairs(
        self, catalog: str, progress: Progress | None = None
    ) -> tuple[list[Pair], list[Skipped]]:
        """The (image, name) pairs of a catalog for fine-tuning; rows without a readable image or a name are skipped."""
        listing = open_listing(catalog)
        if not listing.is_catalog:
            raise ConfigError(
                f"{catalog} is not a catalog: fine-tuning reads a .csv or .parquet with image and name columns."
            )
        # Training crops and resizes from at most a little above the model's input size.
        side = int((self.embedder.input_size or 224) * 1.15)
        pairs: list[Pair] = []
        skipped: list[Skipped] = []
        for record in listing:
            if progress:
                progress(1)
            if isinstance(record, Skipped):
                skipped.append(record)
                continue
            if not record.name.strip():
                skipped.append(Skipped(record.uri, "no name to train on"))
                continue
            try:
                data = self._fetch(record.uri)
                image = decode_image(data, max_pixels=self.settings.max_image_pixels, draft=side).image
            except ImageError as exc:
                skipped.append(Skipped(record.uri, str(exc)))
                continue
            scale = side / min(image.size)
            if scale < 1:
                image = image.resize(
                    (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                )
            pairs.append(Pair(record.item_id, record.name.strip(), image))
        return pairs, skipped

    def finetune(
        self,
        pairs: Sequence[Pair],
        out_dir: str,
        options: Options,
        *,
        on_start: Callable[[int], None] | None = None,
        progress: Progress | None = None,
        on_epoch: Callable[[int, float, dict[str, float]], None] | None = None,
    ) -> FinetuneResult:
        """Fine-tune the settings' open_clip model on the pairs; writes model-config.json and checkpoint.pt."""
        if not self.embedder.supports_text:
            raise ConfigError(
                f"The model {self.embedder.name} embeds images only; fine-tuning pairs images with their "
                "names and needs a CLIP model."
            )
        settings = self.settings
        return finetune(
            settings.model,
            settings.pretrained,
            pairs,
            out_dir,
            options,
            device=settings.device,
            on_start=on_start,
            progress=progress,
            on_epoch=on_epoch,
        )

    # -- risk control ------------------------------------------------------------------------

    def parse_labels(self, text: str) -> list[LabelSpec]:
        """Label tables from TOML text (the API's scans); raises ConfigError with the reason."""
        return parse_labels(text)

    def label_set(self, labels: str | Sequence[LabelSpec]) -> LabelSet:
        """A label set from a TOML file path, or from label specs already parsed."""
        embedder = self.embedder
        if not embedder.supports_text:
            raise ConfigError(
                f"The model {embedder.name} embeds images only; label scans need a text encoder."
            )
        specs = load_labels(labels) if isinstance(labels, str) else list(labels)
        return LabelSet(specs, embedder)

    def classify(
        self, images: Sequence[str], labels_path: str | Sequence[LabelSpec]
    ) -> tuple[LabelSet, list[Classified]]:
        """Zero-shot classify image files (not stored ones) against a label set."""
        labels = self.label_set(labels_path)
        results: list[Classified] = []
        for uri in images:
            try:
                data = self._fetch(uri)
                image = decode_image(data, max_pixels=self.settings.max_image_pixels).image
            except ImageError as exc:
                results.append(Classified(uri, None, str(exc)))
                continue
            results.append(Classified(uri, labels.score(self.embedder.embed_images([image])), None))
        return labels, results

    def scan(
        self,
        labels_path: str | Sequence[LabelSpec],
        *,
        sources: Sequence[str] = (),
        since: date | None = None,
        until: date | None = None,
        min_score: float | None = None,
        progress: Progress | None = None,
    ) -> tuple[LabelSet, int, Iterator[ScanRow]]:
        """Score every stored item in the window; returns the labels, the item count and the rows."""
        start, end = day_window(since, until)
        self.store.require()
        labels = self.label_set(labels_path)
        self.store.check_dim(labels.vectors.shape[1])
        chosen = list(sources) or None
        total = self.store.count(sources=chosen, since=start, until=end)
        rows = scan_items(
            self.store, labels, sources=chosen, since=start, until=end, min_score=min_score, progress=progress
        )
        return labels, total, rows

    def scan_report(
        self,
        labels_path: str | Sequence[LabelSpec],
        out: str,
        *,
        sources: Sequence[str] = (),
        since: date | None = None,
        until: date | None = None,
        min_score: float | None = None,
        on_start: Callable[[int], None] | None = None,
        progress: Progress | None = None,
    ) -> tuple[int, int]:
        """Scan the window and write the report; returns (items in the window, rows written)."""
        check_format(out)
        labels, total, rows = self.scan(
            labels_path, sources=sources, since=since, until=until, min_score=min_score, progress=progress
        )
        if on_start:
            on_start(total)
        meta = {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "sources": list(sources),
            "min_score": min_score,
            "items_in_window": total,
            "model": self.embedder.name,
        }
        return total, write_scan_report(out, rows, labels.names, meta)

    def partitions(self) -> list[PartitionStats]:
        return [p for p in self.store.partition_stats() if p.name != "_default" or p.rows]

    def partitions_before(self, day: date) -> list[PartitionStats]:
        """Monthly partitions whose whole month lies strictly before ``day``."""
        before, _ = day_window(day, None)
        assert before is not None
        names = set(partitions_before(self.store.partitions(), before))
        return [p for p in self.store.partition_stats() if p.name in names]

    def drop_partitions(self, names: Sequence[str]) -> None:
        self.store.drop_partitions(names)

    def duplicates(
        self, *, threshold: float = 0.95, sources: Sequence[str] = (), progress: Progress | None = None
    ) -> list[Group]:
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"--threshold must be a cosine between -1 and 1, got {threshold}.")
        self.store.require()
        return find_duplicates(
            self.store, threshold=threshold, sources=list(sources) or None, progress=progress
        )

    def duplicates_report(
        self,
        out: str,
        *,
        threshold: float = 0.95,
        sources: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> list[Group]:
        """Find reused images and write the groups to ``out`` (.json, .csv or .html)."""
        check_format(out)
        groups = self.duplicates(threshold=threshold, sources=sources, progress=progress)
        write_duplicates_report(out, groups, {"threshold": threshold, "sources": list(sources)})
        return groups
