"""Fine-tuning: read a catalog's (image, name) pairs and fine-tune the settings' open_clip model on them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lookalike.errors import ConfigError, ImageError
from lookalike.usecases.context import Context

if TYPE_CHECKING:
    from lookalike.ingest.sources import Skipped
    from lookalike.train import FinetuneResult, Options, Pair

Progress = Callable[[int], None]


def training_pairs(
    ctx: Context, catalog: str, progress: Progress | None = None
) -> tuple[list[Pair], list[Skipped]]:
    """The (image, name) pairs of a catalog for fine-tuning; rows without a readable image or a name are skipped."""
    from lookalike.ingest import decode_image, open_listing
    from lookalike.ingest.sources import Skipped
    from lookalike.train import Pair

    listing = open_listing(catalog)
    if not listing.is_catalog:
        raise ConfigError(
            f"{catalog} is not a catalog: fine-tuning reads a .csv or .parquet with image and name columns."
        )
    # Training crops and resizes from at most a little above the model's input size.
    side = int((ctx.build_embedder().input_size or 224) * 1.15)
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
            data = ctx.fetch(record.uri)
            image = decode_image(data, max_pixels=ctx.settings.max_image_pixels, draft=side).image
        except ImageError as exc:
            skipped.append(Skipped(record.uri, str(exc)))
            continue
        scale = side / min(image.size)
        if scale < 1:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        pairs.append(Pair(record.item_id, record.name.strip(), image))
    return pairs, skipped


def finetune(
    ctx: Context,
    pairs: Sequence[Pair],
    out_dir: str,
    options: Options,
    *,
    on_start: Callable[[int], None] | None = None,
    progress: Progress | None = None,
    on_epoch: Callable[[int, float, dict[str, float]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the settings' open_clip model on the pairs; writes model-config.json and checkpoint.pt."""
    from lookalike.quality import rank_metrics
    from lookalike.train import finetune as train

    model = ctx.build_embedder()  # the model asked for, not a collection's: training makes a new one
    if not model.supports_text:
        raise ConfigError(
            f"The model {model.name} embeds images only; fine-tuning pairs images with their "
            "names and needs a CLIP model."
        )
    settings = ctx.settings
    return train(
        settings.model,
        settings.pretrained,
        pairs,
        out_dir,
        options,
        device=settings.device,
        on_start=on_start,
        progress=progress,
        on_epoch=on_epoch,
        rank_metrics=rank_metrics,
    )
