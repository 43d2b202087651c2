"""How a collection was embedded, recorded with it, so that later commands use the same model.

The record (model, weights tag or checkpoint path and its content hash, image-only or not) is
kept as the collection's model property, as JSON; a collection made before the record existed
has a plain ``model:weights`` label there, which is still understood.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lookalike.backend import Backend
from lookalike.config import Settings
from lookalike.errors import CollectionNotFoundError, ConfigError, ModelMismatchError
from lookalike.usecases.context import Context


@dataclass(frozen=True)
class Embedding:
    """What made a collection's vectors."""

    model: str  # open_clip name, model-config JSON path (absolute), or a CNN name
    pretrained: str  # a tag, or a checkpoint path (absolute)
    sha256: str = ""  # of the checkpoint file, when ``pretrained`` is one
    image_only: bool = False
    label: str = ""  # the embedder's name, e.g. "ViT-B-32:laion2b_s34b_b79k"

    def to_property(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    def describe(self) -> str:
        return f"--model {self.model} --pretrained {self.pretrained}"


def parse(text: str) -> Embedding | None:
    """The record in a collection's model property; None for an old plain label or nothing."""
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
        return Embedding(
            **{key: data[key] for key in ("model", "pretrained", "sha256", "image_only", "label")}
        )
    except (ValueError, KeyError, TypeError):
        return None


def label_of(text: str) -> str:
    """A collection's model as people read it: the record's label, or the old plain label."""
    record = parse(text)
    return record.label if record else text


def _local(value: str) -> str:
    path = Path(value).expanduser()
    return str(path.resolve()) if path.is_file() else value


def file_sha256(path: str, settings: Settings) -> str:
    """A checkpoint's hash, remembered in the settings' cache while the file is unchanged."""
    from lookalike.embed.checkpoints import file_sha256 as remembered_sha256

    return remembered_sha256(path, settings.cache_dir)


def of_settings(settings: Settings, label: str = "") -> Embedding:
    """The record for the model the settings name (checkpoint files hashed)."""
    from lookalike.embed import is_image_only, weights_of

    model, pretrained = _local(settings.model), _local(weights_of(settings))
    sha = file_sha256(pretrained, settings) if Path(pretrained).is_file() else ""
    return Embedding(model, pretrained, sha, is_image_only(settings.model), label)


def _record_text(ctx: Context) -> str | None:
    """The collection's model property; None where there is no collection (no database is created)."""
    db = ctx.settings.db
    if Backend.of(db) is Backend.LITE and not Path(db).expanduser().exists():
        return None
    try:
        ctx.store.require()  # no round trip once the collection is known in this process
    except CollectionNotFoundError:
        return None
    return ctx.store.model()


def recorded(ctx: Context) -> Embedding | None:
    """The record of the context's collection, without creating a database that is not there."""
    text = _record_text(ctx)
    return parse(text) if text else None


def _explicit(settings: Settings) -> bool:
    """Whether --model or --pretrained (or LOOKALIKE_MODEL / _PRETRAINED) was given."""
    return bool(settings.model_fields_set & {"model", "pretrained"})


def _same(record: Embedding, settings: Settings) -> bool:
    from lookalike.embed import weights_of

    if _local(settings.model) != record.model:
        return False
    pretrained = _local(weights_of(settings))
    if pretrained == record.pretrained:
        return True
    return (
        bool(record.sha256)
        and Path(pretrained).is_file()
        and file_sha256(pretrained, settings) == record.sha256
    )


def bind(ctx: Context) -> None:
    """The one place a collection's model is chosen: its record's, never another.

    Before the context's embedder exists, the collection's record is adopted when no model is
    asked for, a different model asked for is refused, and the embedder is built (the context's
    ``embedder`` property comes here). Once it exists, it is checked against the record as it is
    now (a collection created or replaced since, by another command or process), so that vectors
    of two models never meet. Use cases that embed for a collection call this first (index,
    search by text or image, eval, scan); the check is remembered per record.

    Raises:
        ModelMismatchError: the collection was embedded with another model.
        ConfigError: the collection's checkpoint file is gone.
    """
    if ctx.embedder_injected:
        return  # a test's embedder is what the test means
    text = _record_text(ctx)
    with ctx.binding:
        if not ctx.has_embedder:
            record = parse(text) if text else None
            if record is not None:
                ctx.settings = _adopt(record, ctx.settings)
            ctx.build_embedder()
            ctx.bound_model = text or ""
            return
        if not text or text == ctx.bound_model:
            return
        record = parse(text)
        if record is not None and not _same(record, ctx.embedded_with or ctx.settings):
            raise ModelMismatchError(_mismatch(record, ctx.embedded_with or ctx.settings, running=True))
        ctx.bound_model = text


def _adopt(record: Embedding, settings: Settings) -> Settings:
    """The settings with the record's model, or a clear error for another model or a lost checkpoint."""
    if _explicit(settings):
        if not _same(record, settings):
            raise ModelMismatchError(_mismatch(record, settings, running=False))
        return settings
    if Path(record.pretrained).is_absolute() and not Path(record.pretrained).is_file():
        raise ConfigError(
            f"The collection '{settings.collection}' was indexed with {record.describe()}, and that "
            "checkpoint file is gone: restore it, or pass --model and --pretrained for a model of the same "
            "weights."
        )
    return settings.model_copy(update={"model": record.model, "pretrained": record.pretrained})


def _mismatch(record: Embedding, settings: Settings, *, running: bool) -> str:
    asked = f"--model {settings.model} --pretrained {settings.pretrained}"
    if running:
        return (
            f"The collection '{settings.collection}' was indexed with {record.describe()}, but this process "
            f"runs {asked}. Vectors of two models cannot be compared: restart it without --model/--pretrained "
            "to use the collection's own model, or use another --collection."
        )
    return (
        f"The collection '{settings.collection}' was indexed with {record.describe()}, but this command "
        f"asks for {asked}. Vectors of two models cannot be compared: leave --model/--pretrained "
        "out to use the collection's own model, or use another --collection."
    )


def for_new_collection(ctx: Context) -> str:
    """The model property a collection created now records (an injected test embedder: its name only)."""
    if ctx.embedder_injected:
        return ctx.embedder.name
    return of_settings(ctx.settings, ctx.embedder.name).to_property()
