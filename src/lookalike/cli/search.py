"""Search and show: lookalikes of a text, an image, a stored id or a catalog item; one item's fields."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lookalike.cli.common import (
    AsJson,
    Collection,
    Db,
    DetectMinScore,
    DetectorWeights,
    KeyFilters,
    Model,
    Pretrained,
    Runtime,
    Verbose,
    app,
    day,
    err,
    errors,
    out,
    parse_window,
    print_json,
    served,
    session,
    short_uri,
    summary,
    table,
    tagged,
    with_key_filters,
)

if TYPE_CHECKING:
    from lookalike.queries import Query, SearchResult


def parse_box_option(text: str | None) -> tuple[int, int, int, int] | None:
    from lookalike.store.models import parse_box

    if text is None:
        return None
    try:
        return parse_box(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--box") from None


@app.command()
@with_key_filters(after="source")
def search(
    text: Annotated[str | None, typer.Option(help='Search by words, e.g. "floral top".')] = None,
    image: Annotated[
        str | None, typer.Option(help="Search by an image: a file path or an http(s) URL.")
    ] = None,
    id: Annotated[
        int | None, typer.Option("--id", help="Search by a stored item's internal id (lookalikes of it).")
    ] = None,
    item_id: Annotated[
        str | None,
        typer.Option(
            "--item-id", help="Search by a catalog item id (SKU, user id): lookalikes of its picture."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=16384, help="How many hits.")] = 10,
    offset: Annotated[
        int,
        typer.Option("--offset", min=0, help="Skip this many of the best hits (paging: --offset 10 -k 10)."),
    ] = 0,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", min=-1.0, max=1.0, help="Only hits whose cosine reaches this."),
    ] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only these sources (repeatable).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only items created on or after this day (YYYY-MM-DD, UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only items created on or before this day (YYYY-MM-DD, UTC).")
    ] = None,
    search_params: Annotated[
        str | None,
        typer.Option(
            "--search-params",
            help="Index knobs at query time as JSON: '{\"ef\": 128}' (HNSW), '{\"nprobe\": 16}' (IVF).",
        ),
    ] = None,
    detect: Annotated[
        bool,
        typer.Option(
            "--detect", help="With --image: embed the largest object the detector finds, not the whole image."
        ),
    ] = False,
    box: Annotated[
        str | None,
        typer.Option(
            "--box", help="With --image: embed this part, x0,y0,x1,y1 in pixels (clipped to the image)."
        ),
    ] = None,
    hybrid: Annotated[
        bool,
        typer.Option(
            "--hybrid",
            help="With --text: fuse keyword hits (BM25 over name, category and tags) with the vector hits, "
            "by reciprocal rank fusion (or --keyword-weight). Each --json hit then has its ranks.",
        ),
    ] = False,
    keywords: Annotated[
        bool,
        typer.Option(
            "--keywords",
            help="With --text: keyword hits alone (BM25 over name, category and tags); no model loads.",
        ),
    ] = False,
    keyword_weight: Annotated[
        float | None,
        typer.Option(
            "--keyword-weight",
            min=0.0,
            max=1.0,
            help="With --hybrid: fuse by weights instead of ranks, this one on keywords (0..1), 1 - it on vectors.",
        ),
    ] = None,
    rrf_k: Annotated[
        int | None,
        typer.Option(
            "--rrf-k", min=1, max=100_000, help="With --hybrid: reciprocal rank fusion's k (default 60)."
        ),
    ] = None,
    detector_weights: DetectorWeights = None,
    detect_min_score: DetectMinScore = None,
    per_item: Annotated[
        int | None,
        typer.Option(
            "--per-item",
            min=1,
            max=100,
            help="At most N hits per product (catalog item_id), each product ranked by its best picture: "
            "-k and --offset then count products. A picture without an item_id is a product of its own.",
        ),
    ] = None,
    like: Annotated[
        list[str] | None,
        typer.Option(
            "--like",
            help="More like this (repeatable): id:N (a stored id), item:ITEM_ID (a catalog item), or an "
            "image file or http(s) URL. A bare value is a file if one exists, else a stored id if it is a "
            "number, else an item id. Alone it is the whole query; with --text, --image, --id or "
            "--item-id it refines it. The examples themselves are left out of the hits.",
        ),
    ] = None,
    unlike: Annotated[
        list[str] | None,
        typer.Option(
            "--unlike",
            help="Less like this (repeatable), written as --like: turns the query away from it "
            "(query = normalise(mean(liked and the query) - 0.5 * mean(unliked))).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {took_ms, hits: [...]}.")] = False,
    grid: Annotated[
        Path | None,
        typer.Option(help="Also draw the hits as a PNG grid of thumbnails with names and scores."),
    ] = None,
    db: Db = None,
    collection: Collection = None,
    model: Model = None,
    pretrained: Pretrained = None,
    runtime: Runtime = None,
    verbose: Verbose = False,
    keys: KeyFilters = (),
) -> None:
    """Find the stored images most similar to a text, an image, a stored item or a catalog item."""
    from lookalike.examples import parse_examples
    from lookalike.queries import Query, parse_index_params
    from lookalike.usecases import search as searching

    with errors(verbose):
        first, last = parse_window(since, until)
        liked = parse_examples(like or [], "--like", paths=True)
        unliked = parse_examples(unlike or [], "--unlike", paths=True)
        query = Query(
            text=text,
            image=image,
            id=id,
            item_id=item_id,
            k=k,
            offset=offset,
            min_score=min_score,
            sources=tuple(source or ()),
            keys=keys,
            since=first,
            until=last,
            search_params=tuple(sorted((parse_index_params(search_params, "--search-params") or {}).items())),
            detect=detect,
            box=parse_box_option(box),
            per_item=per_item,
            like=liked,
            unlike=unliked,
            hybrid=hybrid,
            keywords=keywords,
            keyword_weight=keyword_weight,
            rrf_k=rrf_k,
        )
        searching.validate(query)  # every option is checked before a model or a database opens
    with session(
        verbose,
        db,
        collection,
        model,
        pretrained,
        runtime=runtime,
        detector_weights=detector_weights,
        detect_min_score=detect_min_score,
    ) as ctx:
        with served(ctx) as server:
            if server is None:
                result = searching.search(ctx, query)
            else:  # a local query image is read here, under this command's policy, and uploaded
                upload = searching.read_image(ctx, query.image, public_only=False) if query.image else None
                result = server.search(query, upload)
        if grid is not None:
            searching.write_grid(result, str(grid), f"lookalike: {_label(query)}")
    for warning in result.warnings:
        err.print(tagged("warning:", "yellow", warning))
    if result.query_box is not None and not as_json:
        err.print(f"searched the part {','.join(map(str, result.query_box))} of the query image")
    if grid is not None:
        err.print(f"grid written to {grid}")
    if as_json:
        print_json(result.to_dict())
        return
    print_hits(result, offset, grouped=per_item is not None)


def _label(query: Query) -> str:
    if query.text is not None:
        mode = " (hybrid)" if query.hybrid else " (keywords)" if query.keywords else ""
        return f'"{query.text}"{mode}'
    if query.image:
        return f"image {query.image}"
    if query.item_id is not None or query.id is not None:
        return f"like item {query.item_id}" if query.item_id is not None else f"like id {query.id}"
    return "like " + ", ".join(example.text for example in query.like)


def print_hits(result: SearchResult, offset: int = 0, *, grouped: bool = False) -> None:
    """The hits as a table; ``grouped``: ranked per product, a product's pictures sharing its rank."""
    from lookalike.store.fields import FILTERS

    crops = any(hit.item.box for hit in result.hits)
    keys = [name for name in FILTERS if any(getattr(hit.item, name) for hit in result.hits)]
    columns = [("rank", "right"), ("score", "right"), ("item_id", "left"), ("name", "left")]
    columns += [(name, "left") for name in keys]
    columns += [("source", "left"), ("date", "left")]
    columns += [("box", "left"), ("label", "left")] if crops else []
    columns += [("id", "right"), ("uri", "left")]
    rows = []
    ranks = _product_ranks(result, offset) if grouped else range(offset + 1, offset + 1 + len(result.hits))
    for rank, hit in zip(ranks, result.hits, strict=True):
        item = hit.item
        cells = [str(rank), f"{hit.score:.4f}", item.item_id, item.name]
        cells += [_text(getattr(item, name)) for name in keys]
        cells += [item.source, day(item.created_at)]
        if crops:
            cells += [item.box or "whole", f"{item.label} {item.det_score:.2f}" if item.box else ""]
        rows.append([*cells, str(item.id), short_uri(item.uri)])
    table(None, columns, rows, caption=f"{len(result.hits)} hits in {result.took_ms:.1f} ms")


def _product_ranks(result: SearchResult, offset: int) -> list[int]:
    ranks: list[int] = []
    for i, hit in enumerate(result.hits):
        before = result.hits[i - 1].item if i else None
        same = before is not None and hit.item.item_id != "" and before.item_id == hit.item.item_id
        ranks.append(ranks[-1] if same else (ranks[-1] + 1 if ranks else offset + 1))
    return ranks


def _text(value: object) -> str:
    """A field as a table shows it: a list of texts (tags) as the catalog writes it, red|sale."""
    if value is None:
        return ""
    return "|".join(str(v) for v in value) if isinstance(value, tuple | list) else str(value)


@app.command()
def show(
    id: Annotated[int | None, typer.Argument(help="A stored item's internal id.")] = None,
    item_id: Annotated[
        str | None, typer.Option("--item-id", help="A catalog item id (SKU, user id): all its pictures.")
    ] = None,
    as_json: AsJson = False,
    db: Db = None,
    collection: Collection = None,
    verbose: Verbose = False,
) -> None:
    """Show a stored item: every field, and where its image is."""
    from lookalike.usecases import items

    with errors(verbose):
        if (id is None) == (item_id is None):
            raise typer.BadParameter("give exactly one: an ID argument or --item-id")
    from lookalike.remote.client import item_of

    with session(verbose, db, collection, None, None) as ctx, served(ctx) as server:
        if server is not None:
            shown = server.shown(id, item_id)
            found = [item_of(fields) for fields in shown]
        else:
            found = [items.item(ctx, id)] if id is not None else items.by_item_id(ctx, item_id or "")
            shown = items.shown(ctx, found)  # the stored fields and the PDQ hash
    if as_json:
        print_json(shown)  # as GET /items/{id} (and GET /items) answer
        return
    if not out.is_terminal:  # for scripts: one row per item, a column per field
        names = list(shown[0]) if shown else []
        table(
            None,
            [(name, "left") for name in names],
            [[_text(v) for v in f.values()] for f in shown],
        )
    else:
        for item, fields in zip(found, shown, strict=True):
            fields = dict(fields)
            fields["created_at"] = f"{item.created_at} ({day(item.created_at)})"
            if fields.get("pdq"):
                fields["pdq"] = f"{fields.pop('pdq')} (quality {fields.pop('pdq_quality')})"
            rows = [[name, _text(value)] for name, value in fields.items() if value not in ("", None, ())]
            table(f"item {item.id}", [("field", "left"), ("value", "left")], rows)
    if len(found) > 1:
        summary(f"{len(found)} stored items have the item id {item_id}")
