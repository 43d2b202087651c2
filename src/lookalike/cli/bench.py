"""`lookalike bench`: measure ingest, text queries, search and inserts in one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lookalike.cli.common import Verbose, app, err, out, session


@app.command()
def bench(
    vectors: Annotated[int, typer.Option(min=100, help="Vectors in the search benchmark.")] = 100_000,
    images: Annotated[int, typer.Option(min=1, help="Generated JPEGs for the ingest benchmark.")] = 256,
    image_size: Annotated[int, typer.Option(min=32, help="Side of the generated JPEGs, in pixels.")] = 800,
    queries: Annotated[int, typer.Option(min=1, help="Queries timed per measurement.")] = 100,
    model: Annotated[
        str, typer.Option(help="open_clip architecture name or model-config JSON.")
    ] = "ViT-B-32",
    pretrained: Annotated[
        str, typer.Option(help="Weights: 'random' (the real FLOPs, offline), a tag or a checkpoint file.")
    ] = "random",
    db: Annotated[
        str | None,
        typer.Option(help="A Milvus server URI adds that backend; Milvus Lite always runs in a temp folder."),
    ] = None,
    index: Annotated[
        list[str] | None,
        typer.Option("--index", help="Index types to time (repeatable). Default: FLAT and HNSW."),
    ] = None,
    direct_queries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Queries timed through Milvus Lite's own search (slow at 100K+; 0 skips it), "
            "beside lookalike's local index.",
        ),
    ] = 20,
    report: Annotated[
        Path | None, typer.Option("--out", help="Write the results as JSON to this file.")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Measure ingest images/s, text-query latency, vector search latency and recall@10, and insert rate.

    Everything runs on generated data, side by side in one process, so the figures compare.
    """
    from lookalike.bench import BenchConfig, run_bench

    # The bench's own collections, on --db's server too: stores come from the context, with the
    # server's credentials and TLS (LOOKALIKE_TOKEN, ...); the model is the one named here.
    with session(verbose, None, None, model, pretrained) as ctx:
        config = BenchConfig(
            vectors=vectors,
            images=images,
            image_size=image_size,
            queries=queries,
            db=db,
            indexes=tuple(i.upper() for i in index) if index else ("FLAT", "HNSW"),
            direct_queries=direct_queries,
        )
        result = run_bench(ctx, config, say=lambda line: err.print(line, highlight=False))
    table = Table(
        title=f"lookalike bench ({result['machine']['processor']}, {result['machine']['cpus']} CPUs, "
        f"model {result['ingest']['model']})"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    machine = result["machine"]
    table.add_row(
        "CPU vector extensions",
        ", ".join(f"{name} {'yes' if has else 'no'}" for name, has in machine["extensions"].items()),
    )
    table.add_row(
        "load average (1, 5, 15 min) at start / end",
        f"{' '.join(map(str, machine['load_average']))} / {' '.join(map(str, machine['load_average_end']))}",
    )
    auto = result["ingest"]["auto"]
    table.add_row("runtime chosen (image tower / text tower)", f"{auto['image']} / {auto['text']}")
    for runtime, figures in result["ingest"]["runtimes"].items():
        notes = []
        if "speedup_vs_torch" in figures:
            notes.append(f"×{figures['speedup_vs_torch']:.2f}")
        if "agreement_min_cosine" in figures:
            notes.append(f"cos ≥ {figures['agreement_min_cosine']:.4f}")
        notes.append(f"alone vs batch ≥ {figures['batch_min_cosine']:.5f}")
        suffix = f" ({', '.join(notes)})" if notes else ""
        table.add_row(f"ingest {runtime} (images/s)", f"{figures['images_per_s']:.1f}{suffix}")
    text = result["text_query"]
    table.add_row(f"text query encode p50 (ms, {text['runtime']})", f"{text['encode_ms_p50']:.1f}")
    table.add_row(
        "text query total p50 / p99 (ms)", f"{text['total_ms_p50']:.1f} / {text['total_ms_p99']:.1f}"
    )
    for row in result["search"]:
        table.add_row(
            f"search {row['backend']} {row['index']} p50 / p99 (ms), recall@10",
            f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}, {row['recall_at_10']:.3f}",
        )
    reference = result.get("search_reference")
    if reference:
        whole, month = reference["unfiltered"], reference["one_month"]
        table.add_row(
            "search HNSW p50 (ms), recall@10: lookalike vs FAISS HNSWFlat (recall >= 0.99)",
            f"{whole['lookalike']['p50_ms']:.3f}, {whole['lookalike']['recall_at_10']:.3f} vs "
            f"{whole['faiss']['p50_ms']:.3f} (ef {whole['faiss']['ef']}), {whole['faiss']['recall_at_10']:.3f}: "
            f"x{whole['ratio']}",
        )
        table.add_row(
            f"one month ({reference['month_rows']} rows): lookalike vs FAISS with a selector / over the month alone",
            f"{month['lookalike']['p50_ms']:.3f}, {month['lookalike']['recall_at_10']:.3f} vs "
            f"{month['faiss_selector']['p50_ms']:.3f} (ef {month['faiss_selector']['ef']}): x{month['ratio_selector']}"
            f" / {month['faiss_month_index']['p50_ms']:.3f} (ef {month['faiss_month_index']['ef']}): "
            f"x{month['ratio_month_index']}",
        )
    table.add_row("insert (vectors/s)", f"{result['insert']['vectors_per_s']:.0f}")
    table.add_row("peak RSS (MB)", f"{result['peak_rss_mb']:.0f}")
    out.print(table)
    if report is not None:
        report.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        err.print(f"results written to {report}")
