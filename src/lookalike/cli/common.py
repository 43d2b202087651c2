"""What every command shares: the Typer app, the common options, error translation, progress bars."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from lookalike.cli.stderr import filter_grpc_chatter, is_chatter
from lookalike.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED
from lookalike.errors import ConfigError, DatabaseInUseError, LookalikeError
from lookalike.usecases.context import Context

if TYPE_CHECKING:
    from lookalike.remote.client import Client

app = typer.Typer(
    name="lookalike",
    help=(
        "Image similarity search: embed images with CLIP, store them in Milvus, search by text, "
        "image or id.\n\nData lives in --db: a file path is an embedded Milvus Lite database (no setup), "
        "http://host:19530 is a Milvus server."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help is printed as written: Rich markup mode would eat "[labels.NAME]" as a style tag, and its
    # panels give every flag a "<bool>" placeholder although a flag takes no value. Every command and
    # sub-group (policy, hashes, partitions) inherits this mode from the root app.
    rich_markup_mode=None,
)
# Names, paths, URLs and labels come from outside: shown as they are, never as markup, emoji
# codes or terminal control sequences.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """Control, bidi-override and undecodable characters written as escapes (\\x1b, \\u202e, \\udcff)."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class LiteralConsole(Console):
    """A console that prints every string literally: no markup, no emoji codes, controls escaped.

    Tables, summaries and messages all go through ``render_str``, so nothing printed can
    restyle the terminal, hide text or crash on a stray ``[/]``; styles come only from ``tagged``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **kwargs)


def tagged(tag: str, style: str, message: str) -> Text:
    """A styled tag ("error:", "warning:") before a literal message."""
    return Text.assemble((tag, style), " ", printable(message))


out = LiteralConsole(soft_wrap=True)  # a long name or path is never broken across lines
err = LiteralConsole(stderr=True, soft_wrap=True)

# Options every command takes. Defaults come from Settings (environment LOOKALIKE_*), so
# None here means "not given on the command line".
Db = Annotated[
    str | None,
    typer.Option(
        "--db", help="Milvus Lite file path or Milvus server URI. (env LOOKALIKE_DB, default ./lookalike.db)"
    ),
]
Collection = Annotated[
    str | None,
    typer.Option("--collection", help="Collection name. (env LOOKALIKE_COLLECTION, default images)"),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help=(
            "open_clip architecture name (xlm-roberta-base-ViT-B-32 for multilingual text), model-config JSON "
            f"path, or efficientnet-lite0 (image only). (env LOOKALIKE_MODEL, default {DEFAULT_MODEL})"
        ),
    ),
]
Pretrained = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        help=(
            "open_clip pretrained tag, a local checkpoint file, or 'random' (efficientnet-lite0: imagenet). "
            f"(env LOOKALIKE_PRETRAINED, default {DEFAULT_PRETRAINED})"
        ),
    ),
]
Runtime = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help=(
            "What runs the model: auto (on a CPU, per tower the fastest runtime whose vectors agree "
            "with PyTorch fp32 and do not depend on their batch, probed once per model and machine; on "
            "a GPU, PyTorch), torch, torch-bf16, onnx, onnx-int8, onnx-int8-static, openvino, "
            "openvino-int8. Exports and probes are cached under LOOKALIKE_CACHE_DIR. "
            "(env LOOKALIKE_RUNTIME, default auto)"
        ),
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log what the libraries do.")]
DetectorWeights = Annotated[
    str | None,
    typer.Option(
        "--detector-weights",
        help=(
            "Object detector weights (with --detect): a local .pth file of the torchvision detector, 'default' "
            "to download its COCO weights, or 'random'. (env LOOKALIKE_DETECTOR_WEIGHTS, default: default)"
        ),
    ),
]
DetectMinScore = Annotated[
    float | None,
    typer.Option(
        "--detect-min-score",
        min=0.0,
        max=1.0,
        help="Detector confidence a box needs (with --detect). (env LOOKALIKE_DETECT_MIN_SCORE, default 0.25)",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def context_for(
    db: str | None, collection: str | None, model: str | None, pretrained: str | None, **extra: Any
) -> Context:
    """The use cases' context for these options; nothing is opened or loaded yet. A command that only
    reads a Milvus Lite database does not start Milvus Lite (``Context.read_files``)."""
    from lookalike.config import load_settings  # pydantic-settings: not for --help

    settings = load_settings(db=db, collection=collection, model=model, pretrained=pretrained, **extra)
    return Context(settings, read_files=True)


@contextmanager
def session(
    verbose: bool,
    db: str | None,
    collection: str | None,
    model: str | None,
    pretrained: str | None,
    read_files: bool = True,
    **extra: Any,
) -> Iterator[Context]:
    """What every command does around its work: logging, the context, error translation, closing."""
    setup_logging(verbose)
    with errors(verbose):
        ctx = context_for(db, collection, model, pretrained, **extra)
        if not read_files:  # serve: it writes while commands read
            ctx.read_files = False
        try:
            yield ctx
        except _HeldByServer:
            raise
        except DatabaseInUseError as exc:
            raise _held(ctx, exc) from None
        finally:
            ctx.close()


@contextmanager
def served(ctx: Context) -> Iterator[Client | None]:
    """The `lookalike serve` holding this context's Milvus Lite database (said on stderr), else None.

    Milvus Lite lets one process open a database; while a server holds it, the commands its API
    offers ask the server instead (lookalike/remote/) and print its answers as their own.

    Raises:
        DatabaseInUseError: a live server holds the database but serves another collection.
    """
    from lookalike.remote.record import live

    record = live(ctx.settings.db)
    if record is None:
        yield None
        return
    if record.collection != ctx.settings.collection:
        raise _HeldByServer(
            f"The database {ctx.settings.db} is in use by `lookalike serve` at {record.url} (pid {record.pid}), "
            f"which serves the collection {record.collection!r}, not {ctx.settings.collection!r}: Milvus Lite "
            "lets one process open a database at a time. Stop the server, or serve this collection."
        )
    from lookalike.remote.client import Client

    err.print(f"via lookalike serve at {record.url}")
    with Client(
        record.url, api_key=ctx.settings.api_key, timeout_s=max(60.0, ctx.settings.timeout_s)
    ) as client:
        yield client


class _HeldByServer(DatabaseInUseError):
    """A live `lookalike serve` holds the database, and this command cannot go through it."""


def _held(ctx: Context, exc: DatabaseInUseError) -> DatabaseInUseError:
    """The lock's message, naming the server when a live `lookalike serve` holds the database."""
    from lookalike.remote.record import live

    record = live(ctx.settings.db)
    if record is None:
        return exc
    return _HeldByServer(
        f"The database {ctx.settings.db} is in use by `lookalike serve` at {record.url} (pid {record.pid}): "
        "Milvus Lite lets one process open it at a time, and this command does not go through the "
        "server (search, show, stats, flags, claim, review, audit, waves, export, delete and index do). Stop the server "
        "and run this command again."
    )


class _NoGrpcChatter(logging.Filter):
    """gRPC's keepalive renegotiation with Milvus (GOAWAY too_many_pings) is not the user's business."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_chatter(record.getMessage().encode())


def setup_logging(verbose: bool) -> None:
    # open_clip and huggingface_hub log download failures and retries at ERROR on the root
    # logger; the user gets one clear message from us instead. lookalike's own warnings (the
    # first-use ONNX export and runtime probe, how long they take) are shown.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    if not verbose:
        filter_grpc_chatter()  # gRPC's C core writes to fd 2 itself, past Python's logging
    logging.basicConfig(
        level=logging.INFO if verbose else logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoGrpcChatter())
    if not verbose:
        for name in ("huggingface_hub", "open_clip"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        # The runtimes' first-use notes, and the store's recovery lines (a read index rebuilt, an
        # interrupted compaction finished, a damaged file set aside): one line each, no traceback.
        for name in ("lookalike.embed.runtimes", "lookalike.store"):
            notes = logging.getLogger(name)
            notes.setLevel(logging.WARNING)  # the root logger stays at CRITICAL for everything else
            notes.propagate = False
            if not any(isinstance(h, _Notes) for h in notes.handlers):
                notes.addHandler(_Notes())


class _Notes(logging.Handler):
    """lookalike's notes (WARNING and up from the runtimes and the store) as plain lines on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        err.print(tagged("note:", "dim", record.getMessage()), soft_wrap=True)


def table(
    title: str | None,
    columns: Sequence[tuple[str, str]],
    rows: Iterable[Sequence[str]],
    caption: str | None = None,
    console: Console | None = None,
) -> None:
    """A table: boxed for a terminal; for a pipe or a file, one tab-separated line per row, never wrapped.

    ``columns`` are (name, justify). Names and paths are printed whole either way. In a pipe the
    title and caption (``# 5 hits in 12 ms``) go to stderr, so that stdout holds only the rows.
    """
    console = console or out
    if not console.is_terminal:
        stream = sys.stderr if console.stderr else sys.stdout
        if title:
            note(f"# {title}")
        stream.write("\t".join(name for name, _ in columns) + "\n")
        for row in rows:
            stream.write("\t".join(_one_line(cell) for cell in row) + "\n")
        stream.flush()
        if caption:
            note(f"# {caption}")
        return
    boxed = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for name, justify in columns:
        boxed.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        boxed.add_row(*row)  # the console prints them literally (render_str)
    console.print(boxed)


def _one_line(cell: str) -> str:
    return printable(cell.replace("\t", " ").replace("\r", " ").replace("\n", " "))


def note(line: str) -> None:
    """A line about the output, on stderr, after what stdout already holds."""
    sys.stdout.flush()
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


def summary(line: str) -> None:
    """A line about the output (a count, a heading): on stdout in a terminal, where it reads with the
    table; on stderr in a pipe, so that stdout holds only the table's rows."""
    if out.is_terminal:
        out.print(line, highlight=False, markup=False)
    else:
        note(line)


@contextmanager
def errors(verbose: bool = False) -> Iterator[None]:
    try:
        yield
    except LookalikeError as exc:
        err.print(tagged("error:", "bold red", str(exc)), soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; what was already inserted is kept and a re-run resumes from it.")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise  # Typer's own usage errors print themselves (exit 2)
    except Exception as exc:
        if verbose:
            raise
        err.print(
            tagged(
                "unexpected error:",
                "bold red",
                f"{type(exc).__name__}: {exc}\n"
                "Run the command again with --verbose for the traceback, and please report it.",
            )
        )
        raise typer.Exit(70) from None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


# JSON leaves these unescaped, but line readers (Python's splitlines, editors, some log shippers)
# break lines at them: a product name holding one must not split the one line --json promises.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAK = re.compile("[\x85\u2028\u2029]")


def json_text(value: Any, **options: Any) -> str:
    """``value`` as valid JSON: a NaN or infinite number (a broken stored vector's score) is null, never NaN."""
    text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False, **options)
    return _LINE_BREAK.sub(lambda match: _LINE_BREAKS[match.group()], text)


def print_json(value: Any, **options: Any) -> None:
    """Exactly one line of valid JSON on stdout (``options``: json.dumps's, e.g. ``default=str``)."""
    sys.stdout.write(json_text(value, **options) + "\n")
    sys.stdout.flush()


def parse_day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2023-11-19.", param_hint=flag) from None


def parse_window(
    since: str | None, until: str | None, flags: tuple[str, str] = ("--since", "--until")
) -> tuple[date | None, date | None]:
    """A window of whole days, checked before any model or database opens: each a date, in order."""
    first, last = parse_day(since, flags[0]), parse_day(until, flags[1])
    if first and last and first > last:
        raise typer.BadParameter(
            f"{flags[0]} {first} is after {flags[1]} {last}: the window holds no day.", param_hint=flags[0]
        )
    return first, last


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def short_uri(uri: str) -> str:
    """A path under the working directory is shown relative to it."""
    try:
        return str(Path(uri).relative_to(Path.cwd()))
    except ValueError:
        return uri


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def counted(description: str, run: Callable[[Callable[[int], None]], Any], total: int | None = None) -> Any:
    with progress_bar() as bar:
        task = bar.add_task(description, total=total, rate="")
        return run(lambda n: bar.update(task, advance=n))


def identities(field: str, label: str) -> Callable[[list[str] | None], list[str] | None]:
    """A Typer callback refusing, as the command line is parsed, a --source or --item-id value
    that no stored item can hold: before a model or a database opens, not "nothing matches" after."""

    def check(values: list[str] | None) -> list[str] | None:
        from lookalike.usecases.items import check_filter

        try:
            check_filter(field, values or [], label)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None
        return values

    return check


KeyFilters = tuple[tuple[str, tuple[str, ...]], ...]
"""(field, values) for each filter field a command line asked for: ``(("category", ("shoes",)),)``."""


def with_key_filters(after: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command a repeatable option per filter field of the field table (``--category``,
    ``--tag``: ``store.fields.FILTERS``), listed after its parameter ``after``. The command takes them
    as one parameter, ``keys`` (``KeyFilters``), holding the fields given; a new filter field in the
    table is a new option here without a change to the command."""
    import functools
    import inspect

    from lookalike.store.fields import FILTERS

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        params = [p for p in signature.parameters.values() if p.name != "keys"]
        options = [
            inspect.Parameter(
                f"filter_{name}",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=None,
                annotation=Annotated[
                    list[str] | None,
                    typer.Option(
                        spec.option,
                        help=f"Only items {spec.help} (repeatable: any of them).",
                        show_default=False,
                    ),
                ],
            )
            for name, spec in FILTERS.items()
        ]
        at = [p.name for p in params].index(after) + 1

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            given = [(name, tuple(kwargs.pop(f"filter_{name}", None) or ())) for name in FILTERS]
            return command(*args, **kwargs, keys=tuple((name, values) for name, values in given if values))

        run.__signature__ = signature.replace(parameters=[*params[:at], *options, *params[at:]])  # type: ignore[attr-defined]
        return run

    return decorate
