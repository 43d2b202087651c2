"""Retrieval quality: eval, demo-data, finetune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli.common import (
    Collection,
    Db,
    Model,
    Pretrained,
    Runtime,
    Verbose,
    app,
    counted,
    err,
    errors,
    out,
    print_json,
    progress_bar,
    session,
    setup_logging,
    short_uri,
    table,
    tagged,
)

METRIC_HELP = (
    "recall@k: share of queries with a relevant item in the first k hits; MRR: mean of 1/rank of the "
    "first relevant hit (0 if none in the first 100); nDCG@10: binary relevance."
)


_DIRECTION_LABELS = {
    "text_to_image": "text to image (vector)",
    "text_to_image_by_keywords": "text to image (keywords)",
    "text_to_image_hybrid": "text to image (hybrid)",
}


def _print_metrics(title: str, sections: dict[str, dict[str, float] | None], counts: dict[str, int]) -> None:
    """The metrics: boxed in a terminal; in a pipe TSV on stdout, the title and legend on stderr."""
    from lookalike.quality import METRICS

    columns = [("direction", "left"), ("queries", "right"), *((name, "right") for name in METRICS)]
    rows = []
    for direction, metrics in sections.items():
        cells = [f"{metrics[name]:.3f}" for name in METRICS] if metrics else ["–"] * len(METRICS)
        rows.append(
            [
                _DIRECTION_LABELS.get(direction, direction.replace("_", " ")),
                str(counts.get(direction, "")),
                *cells,
            ]
        )
    table(title, columns, rows, caption=METRIC_HELP)


@app.command("eval")
def eval_(
    queries: Annotated[
        Path,
        typer.Option(
            "--queries",
            help="CSV with columns query (a text, or an image path relative to the CSV or URL), relevant "
            "(item ids separated by | or ;) and optionally kind (text or image).",
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print JSON: {"text_to_image": {"recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", '
            '"queries"}, "text_to_image_by_keywords": {...}, "text_to_image_hybrid": {...}, '
            '"image_to_image": {...}, "failed": [...], "notes": [...]}.',
        ),
    ] = False,
    rrf_k: Annotated[
        int | None,
        typer.Option(
            "--rrf-k", min=1, max=100_000, help="The hybrid's reciprocal rank fusion k (default 60)."
        ),
    ] = None,
    keyword_weight: Annotated[
        float | None,
        typer.Option(
            "--keyword-weight",
            min=0.0,
            max=1.0,
            help="The hybrid fuses by weights instead, this one on keywords.",
        ),
    ] = None,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
) -> None:
    """Measure how well the collection answers known queries: recall@1/5/10, MRR and nDCG@10.

    Every query is searched like `lookalike search` (the top 100 hits, counted once per item id). A text
    query is searched three ways, side by side: by vectors, by keywords alone (--keywords: BM25 over
    name, category and tags) and by both fused (--hybrid: reciprocal rank fusion, k 60, or as --rrf-k or
    --keyword-weight say).

    The hits are compared with its relevant item ids, separately for text → image and image → image.
    """
    from lookalike.usecases import quality

    with (
        session(verbose, db, collection, model, pretrained, runtime=runtime) as ctx,
        progress_bar() as bar,
    ):
        task = bar.add_task("evaluating", total=None, rate="")
        report = quality.evaluate(
            ctx,
            str(queries),
            on_start=lambda total: bar.update(task, total=total),
            progress=lambda n: bar.update(task, advance=n),
            rrf_k=rrf_k,
            keyword_weight=keyword_weight,
        )
    for query, reason in report.failed:
        err.print(tagged("skipped query", "yellow", f"{query}: {reason}"))
    for note in report.notes:
        err.print(tagged("note:", "yellow", note))
    if as_json:
        print_json(report.to_dict())
        return
    _print_metrics(f"lookalike eval: {queries}", report.metrics, report.counts)


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write images/, catalog.csv and queries.csv into.")
    ],
    n: Annotated[int, typer.Option("--n", min=1, max=1_000_000, help="How many catalog items.")] = 500,
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 0,
    shop_names: Annotated[
        bool,
        typer.Option(
            "--shop-names",
            help='Title items as shops do ("Mira navy polka dot wrap dress": brands, synonyms, the colour or '
            "print sometimes left out) with a category column; the pictures and queries stay the same.",
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Write a synthetic captioned product catalog to try lookalike on, with evaluation queries.

    Garment, shoe and bag silhouettes in 8 colours, plain, striped, floral or dotted, titled like "red floral dress".

    queries.csv holds text queries (each combination; colour + category; pattern + category) and image queries
    (fresh drawings, not in the catalog), each with the ids of the items that have what it names.
    """
    from lookalike.usecases.quality import demo_data as write

    setup_logging(verbose)
    with errors(verbose):
        made = counted(
            "drawing products",
            lambda advance: write(str(out_dir), n, seed, progress=advance, shop_names=shop_names),
            n,
        )
    err.print(
        f"wrote {made.items} items to {short_uri(str(made.catalog))} and "
        f"{made.text_queries} text + {made.image_queries} image queries to {short_uri(str(made.queries))}"
    )
    err.print(
        f"next: lookalike index {short_uri(str(made.catalog))} && "
        f"lookalike eval --queries {short_uri(str(made.queries))}"
    )


@app.command()
def finetune(
    catalog: Annotated[
        Path,
        typer.Option("--catalog", help="CSV or Parquet catalog with image and name columns (item_id too)."),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for model-config.json, checkpoint.pt and finetune.json.")
    ],
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training pairs, at most.")] = 10,
    max_minutes: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this long and keep the best epoch so far.")
    ] = None,
    lr: Annotated[
        float,
        typer.Option(
            min=0.0, help="Peak learning rate (AdamW, warm-up then cosine). 1e-5 suits pretrained CLIP."
        ),
    ] = 1e-5,
    batch_size: Annotated[
        int, typer.Option(min=2, help="Pairs per step; each step contrasts every pair with the rest.")
    ] = 32,
    patience: Annotated[
        int, typer.Option(min=1, help="Stop when held-out recall@5 has not improved for this many epochs.")
    ] = 3,
    val_fraction: Annotated[
        float, typer.Option(min=0.01, max=0.9, help="Share of items held out for the figures.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seeds the split, the order and the augmentation.")] = 0,
    model: Model = None,
    pretrained: Pretrained = None,
    verbose: Verbose = False,
) -> None:
    """Fine-tune the open_clip model on a catalog's (image, name) pairs, contrastively.

    Items are split into training and held-out sets by a hash of their id.

    Held-out text → image figures are printed before training and after every epoch; the best epoch is kept.

    The result loads like any checkpoint: --model OUT/model-config.json --pretrained OUT/checkpoint.pt.
    """
    from lookalike.train import Options
    from lookalike.usecases import training

    options = Options(
        epochs=epochs,
        max_minutes=max_minutes,
        lr=lr,
        batch_size=batch_size,
        patience=patience,
        val_fraction=val_fraction,
        seed=seed,
    )
    with session(verbose, None, None, model, pretrained) as ctx:
        pairs, skipped = counted(
            "reading images", lambda advance: training.training_pairs(ctx, str(catalog), advance)
        )
        for item in skipped:
            err.print(tagged("skipped", "yellow", f"{short_uri(item.uri)}: {item.reason}"))

        def epoch_line(epoch: int, loss: float, metrics: dict[str, float]) -> None:
            err.print(
                f"epoch {epoch}: loss {loss:.3f}, held-out recall@5 {metrics['recall@5']:.3f}, "
                f"MRR {metrics['mrr']:.3f}",
                highlight=False,
            )

        with progress_bar() as bar:
            task = bar.add_task("fine-tuning", total=None, rate="")
            result = training.finetune(
                ctx,
                pairs,
                str(out_dir),
                options,
                on_start=lambda steps: bar.update(task, total=steps),
                progress=lambda n: bar.update(task, advance=n),
                on_epoch=epoch_line,
            )
    counts = {"before": result.held_out_pairs, "after": result.held_out_pairs}
    title = (
        f"held-out text → image ({result.train_pairs} training pairs, {result.held_out_pairs} held out; "
        f"{result.epochs_run} epochs, best {result.best_epoch}, stopped by {result.stopped}, {result.seconds:.0f} s)"
    )
    _print_metrics(title, {"before": result.before, "after": result.after}, counts)
    if not result.improved:
        out.print(
            f"No epoch beat the starting model on the held-out pairs (best epoch 0 of {result.epochs_run}), "
            f"so {short_uri(result.checkpoint_path)} holds the starting weights unchanged: keep using the "
            "model you started from. Try a smaller or larger --lr, more --epochs, or more pairs.",
            highlight=False,
            markup=False,
        )
        return
    out.print(
        f"wrote {short_uri(result.config_path)} and {short_uri(result.checkpoint_path)}\n"
        f"use: --model {short_uri(result.config_path)} --pretrained {short_uri(result.checkpoint_path)}",
        highlight=False,
        markup=False,
    )
