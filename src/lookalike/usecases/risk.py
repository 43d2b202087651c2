"""Risk control: zero-shot label scans of a time window, reused-image groups, old months dropped."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike import durable
from lookalike.errors import ConfigError, ImageError
from lookalike.queries import Classified, day_window
from lookalike.usecases.context import Context
from lookalike.usecases.embedding import bind

if TYPE_CHECKING:
    from lookalike.scan import Group, LabelSet, LabelSpec, ScanRow
    from lookalike.scan.calibrate import Calibration
    from lookalike.store import PartitionStats

Progress = Callable[[int], None]


def parse_labels(text: str) -> list[LabelSpec]:
    """Label tables from TOML text (the API's scans); raises ConfigError with the reason."""
    from lookalike.scan import parse_labels as parse

    return parse(text)


def load_labels(path: str) -> list[LabelSpec]:
    """Label tables from a TOML file, read before any model loads; raises ConfigError with the reason."""
    from lookalike.scan import load_labels as load

    return load(path)


def check_images(images: Sequence[str]) -> None:
    """Refuse now a list of images none of which can be read: each a local path that is no regular
    readable file (a URL is read only when classified). One readable image is enough: the others are
    reported as skipped, as ever.

    Raises:
        ConfigError: before a model loads, naming each image and what it is.
    """
    from lookalike.ingest.policy import file_problem, is_url, printable_path

    problems = []
    for image in images:
        problem = None if is_url(image) else file_problem(str(Path(image).expanduser()))
        if problem is None:
            return
        problems.append(f"{printable_path(image)}: {problem}")
    if problems:
        raise ConfigError("No image to classify can be read: " + "; ".join(problems) + ".")


def label_set(ctx: Context, labels: str | Sequence[LabelSpec]) -> LabelSet:
    """A label set from a TOML file path, or from label specs already parsed."""
    from lookalike.scan import LabelSet, load_labels

    specs = (
        load_labels(labels) if isinstance(labels, str) else list(labels)
    )  # a bad file fails before the model
    embedder = ctx.embedder
    if not embedder.supports_text:
        raise ConfigError(f"The model {embedder.name} embeds images only; label scans need a text encoder.")
    return LabelSet(specs, embedder)


def classify(
    ctx: Context, images: Sequence[str], labels_path: str | Sequence[LabelSpec]
) -> tuple[LabelSet, list[Classified]]:
    """Zero-shot classify image files (not stored ones) against a label set."""
    from lookalike.ingest import decode_image

    labels = label_set(ctx, labels_path)
    results: list[Classified] = []
    for uri in images:
        try:
            image = decode_image(ctx.fetch(uri), max_pixels=ctx.settings.max_image_pixels).image
        except ImageError as exc:
            results.append(Classified(uri, None, str(exc)))
            continue
        results.append(Classified(uri, labels.score(ctx.embedder.embed_images([image])), None))
    return labels, results


def scan(
    ctx: Context,
    labels_path: str | Sequence[LabelSpec],
    *,
    sources: Sequence[str] = (),
    since: date | None = None,
    until: date | None = None,
    min_score: float | None = None,
    progress: Progress | None = None,
) -> tuple[LabelSet, int, Iterator[ScanRow]]:
    """Score every stored item in the window; returns the labels, the item count and the rows."""
    from lookalike.scan import scan as scan_items
    from lookalike.store.window import Window

    start, end = day_window(since, until)
    ctx.store.require()
    bind(ctx)  # label vectors must come from the collection's own model
    labels = label_set(ctx, labels_path)
    ctx.store.check_dim(labels.vectors.shape[1])
    window = Window.of(sources=list(sources) or None, since=start, until=end)
    total = ctx.store.count(window)
    rows = scan_items(ctx.store, labels, window=window, min_score=min_score, progress=progress)
    return labels, total, rows


def scan_report(
    ctx: Context,
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
    from lookalike.scan import check_format, write_scan_report

    check_format(out)
    labels, total, rows = scan(
        ctx, labels_path, sources=sources, since=since, until=until, min_score=min_score, progress=progress
    )
    if on_start:
        on_start(total)
    meta = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "sources": list(sources),
        "min_score": min_score,
        "items_in_window": total,
        "model": ctx.embedder.name,
    }
    return total, write_scan_report(out, rows, labels.names, meta)


def partitions(ctx: Context) -> list[PartitionStats]:
    return [p for p in ctx.store.partition_stats() if p.name != "_default" or p.rows]


def partitions_before(ctx: Context, day: date) -> list[PartitionStats]:
    """Monthly partitions whose whole month lies strictly before ``day``."""
    from lookalike.store import partitions_before as before_day

    before, _ = day_window(day, None)
    assert before is not None
    names = set(before_day(ctx.store.partitions(), before))
    return [p for p in ctx.store.partition_stats() if p.name in names]


def drop_partitions(ctx: Context, names: Sequence[str]) -> None:
    ctx.store.drop_partitions(names)


def duplicates(
    ctx: Context,
    *,
    threshold: float = 0.95,
    sources: Sequence[str] = (),
    progress: Progress | None = None,
    by: str = "vector",
    max_distance: int = 31,
) -> list[Group]:
    """Reused pictures, by CLIP vector (cosine >= threshold) or by PDQ hash (distance <= max_distance)."""
    from lookalike.scan import find_duplicates, find_hash_duplicates
    from lookalike.scan.hashes import check_distance

    if by not in ("vector", "pdq"):
        raise ConfigError(f"--by must be vector or pdq, got {by!r}.")
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be a cosine between -1 and 1, got {threshold}.")
    check_distance(max_distance)
    ctx.store.require()
    chosen = list(sources) or None
    if by == "pdq":
        hashes = ctx.workflow.hashes()
        return find_hash_duplicates(
            ctx.store, hashes, max_distance=max_distance, sources=chosen, progress=progress
        )
    return find_duplicates(ctx.store, threshold=threshold, sources=chosen, progress=progress)


def duplicates_report(
    ctx: Context,
    out: str,
    *,
    threshold: float = 0.95,
    sources: Sequence[str] = (),
    progress: Progress | None = None,
    by: str = "vector",
    max_distance: int = 31,
) -> list[Group]:
    """Find reused images and write the groups to ``out`` (.json, .csv or .html)."""
    from lookalike.scan import check_format, write_duplicates_report

    check_format(out)
    groups = duplicates(
        ctx, threshold=threshold, sources=sources, progress=progress, by=by, max_distance=max_distance
    )
    meta: dict[str, object] = {"by": by, "sources": list(sources)}
    meta.update({"max_distance": max_distance} if by == "pdq" else {"threshold": threshold})
    write_duplicates_report(out, groups, meta)
    return groups


def calibrate(
    ctx: Context,
    labels_path: str,
    examples_path: str,
    *,
    precision: float = 0.95,
    write: bool = False,
) -> tuple[list[Calibration], list[tuple[str, str]]]:
    """Per label, the threshold reaching ``precision`` on the examples; returns them and the unreadable images.

    With ``write``, the thresholds found are written into the label file (other lines kept).
    """
    from pathlib import Path

    import numpy as np

    from lookalike.ingest import decode_image
    from lookalike.scan import load_labels
    from lookalike.scan.calibrate import load_examples, sweep, with_thresholds

    if not 0.0 < precision <= 1.0:
        raise ConfigError(f"--precision must be above 0 and at most 1, got {precision}.")
    specs = load_labels(labels_path)
    examples = load_examples(examples_path, [spec.name for spec in specs])  # bad files fail before the model
    labels = label_set(ctx, specs)
    vectors, used, unreadable = [], [], []
    for example in examples:
        try:
            image = decode_image(ctx.fetch(example.image), max_pixels=ctx.settings.max_image_pixels).image
        except ImageError as exc:
            unreadable.append((example.image, str(exc)))
            continue
        vectors.append(ctx.embedder.embed_images([image])[0])
        used.append(example)
    if not used:
        raise ConfigError("None of the example images could be read.")
    images = np.stack(vectors)
    cosine = labels.score(images).cosine
    found = []
    for column, spec in enumerate(specs):
        negatives = labels.negatives[column]
        # Where a negative prompt wins the label never matches, whatever the threshold.
        beaten = (
            np.ones(len(used), dtype=bool)
            if negatives is None
            else cosine[:, column] > (images @ negatives.T).max(axis=1)
        )
        effective = np.where(beaten, cosine[:, column], -np.inf).astype(np.float32)
        positive = np.array([e.label == spec.name for e in used])
        found.append(sweep(effective, positive, precision, spec.name))
    if write:
        chosen = {c.label: c.threshold for c in found if c.threshold is not None}
        if chosen:
            path = Path(labels_path).expanduser()
            text = with_thresholds(path.read_text(encoding="utf-8"), chosen)
            durable.write_text(path, text)
    return found, unreadable
