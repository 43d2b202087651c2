"""Contrastive fine-tuning of an open_clip model on a catalog's (image, name) pairs.

The pairs are split by item into a training set and a held-out set. Each epoch trains on
the first with CLIP's own loss (open_clip's ``ClipLoss``), then ranks the held-out images
for each held-out name; the epoch with the best held-out recall@5 (then MRR) is kept, and
training stops when it has not improved for ``patience`` epochs or the time is up.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from lookalike import durable
from lookalike.embed.weights import PREPROCESS_KWARGS
from lookalike.errors import ConfigError

if TYPE_CHECKING:
    from lookalike.embed.openclip import OpenClipModel

# Held-out ranking figures (recall@5, MRR, ...) of ranked item ids against each name's relevant ids;
# the use case passes the quality package's metrics, so that training does not depend on it.
RankMetrics = Callable[[Sequence[Sequence[str]], Sequence[frozenset[str]]], dict[str, float]]

CONFIG_FILE = "model-config.json"
CHECKPOINT_FILE = "checkpoint.pt"
REPORT_FILE = "finetune.json"
MIN_PAIRS = 8


@dataclass(frozen=True)
class Pair:
    """One training example: a catalog item's image and its name."""

    item_id: str
    name: str
    image: Image.Image


@dataclass(frozen=True)
class Options:
    epochs: int = 10
    max_minutes: float | None = None
    lr: float = 1e-5
    batch_size: int = 32
    patience: int = 3
    val_fraction: float = 0.2
    weight_decay: float = 0.2
    seed: int = 0


@dataclass
class FinetuneResult:
    """What a fine-tuning run did; ``before`` and ``after`` are held-out text→image figures."""

    before: dict[str, float]
    after: dict[str, float]
    train_pairs: int
    held_out_pairs: int
    epochs_run: int
    best_epoch: int
    stopped: str  # "epochs", "early stopping", "time limit"
    seconds: float
    config_path: str
    checkpoint_path: str
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def improved(self) -> bool:
        """Whether any epoch beat the starting model on the held-out pairs (else the start was kept)."""
        return self.best_epoch > 0


def split_pairs(pairs: Sequence[Pair], val_fraction: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Held-out by a hash of the item id: the same catalog and seed always split the same way."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction}.")

    def bucket(pair: Pair) -> float:
        digest = hashlib.blake2b(f"{seed}:{pair.item_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    train: list[Pair] = []
    held_out: list[Pair] = []
    for pair in pairs:
        (held_out if bucket(pair) < val_fraction else train).append(pair)
    return train, held_out


def _held_out_metrics(
    loaded: OpenClipModel, pixels: Any, held_out: Sequence[Pair], batch_size: int, rank_metrics: RankMetrics
) -> dict[str, float]:
    """Rank the held-out images for each distinct held-out name."""
    import torch

    model = loaded.model
    names = sorted({p.name for p in held_out})
    model.eval()
    with torch.no_grad():
        images = torch.cat(
            [
                model.encode_image(pixels[i : i + batch_size].to(loaded.device), normalize=True)
                for i in range(0, len(pixels), batch_size)
            ]
        )
        texts = torch.cat(
            [
                model.encode_text(
                    loaded.tokenizer(names[i : i + batch_size]).to(loaded.device), normalize=True
                )
                for i in range(0, len(names), batch_size)
            ]
        )
    order = (texts @ images.T).argsort(dim=1, descending=True).cpu().numpy()
    ids = [p.item_id for p in held_out]
    rankings = [[ids[j] for j in row] for row in order]
    relevant = [frozenset(p.item_id for p in held_out if p.name == name) for name in names]
    return rank_metrics(rankings, relevant)


def _optimizer(model: Any, options: Options) -> Any:
    import torch

    # open_clip's convention: no weight decay on gains, biases, embeddings and the logit scale.
    decay: list[Any] = []
    keep: list[Any] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (keep if exempt else decay).append(param)
    groups = [{"params": keep, "weight_decay": 0.0}, {"params": decay, "weight_decay": options.weight_decay}]
    return torch.optim.AdamW(groups, lr=options.lr, betas=(0.9, 0.98), eps=1e-6)


def _schedule(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero: the multiplier of the base learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _write_model(loaded: OpenClipModel, state: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    preprocess = {
        key: loaded.preprocess_kwargs[kw]
        for key, kw in PREPROCESS_KWARGS.items()
        if kw in loaded.preprocess_kwargs
    }
    config = out_dir / CONFIG_FILE
    durable.write_text(config, json.dumps({"model_cfg": loaded.cfg, "preprocess_cfg": preprocess}, indent=2))
    checkpoint = out_dir / CHECKPOINT_FILE
    with durable.replacing_file(checkpoint, "wb") as handle:
        torch.save(state, handle)
    return config, checkpoint


def finetune(
    model_spec: str,
    pretrained: str,
    pairs: Sequence[Pair],
    out_dir: str | Path,
    options: Options = Options(),
    *,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, float, dict[str, float]], None] | None = None,
    rank_metrics: RankMetrics,
) -> FinetuneResult:
    """Fine-tune ``model_spec`` / ``pretrained`` on the pairs; writes the config and checkpoint to ``out_dir``.

    ``on_start`` gets the number of training steps planned, ``progress`` one call per step,
    ``on_epoch`` (epoch, mean training loss, held-out metrics) after each epoch.

    Raises:
        ConfigError: too few pairs, or options that cannot work.
        ModelUnavailableError: the model cannot be loaded.
    """
    import torch
    from open_clip import ClipLoss

    from lookalike.embed.openclip import load_open_clip

    if options.epochs < 1 or options.batch_size < 2 or options.lr <= 0:
        raise ConfigError("--epochs must be ≥ 1, --batch-size ≥ 2 and --lr > 0.")
    train, held_out = split_pairs(pairs, options.val_fraction, options.seed)
    if len(train) < MIN_PAIRS or len(held_out) < 2:
        raise ConfigError(
            f"Fine-tuning needs at least {MIN_PAIRS} training and 2 held-out pairs (images with a name); "
            f"this catalog gives {len(train)} and {len(held_out)}. Add items or change --val-fraction."
        )
    started = time.monotonic()
    deadline = started + options.max_minutes * 60 if options.max_minutes else math.inf
    loaded = load_open_clip(model_spec, pretrained, device)
    model = loaded.model
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    held_out_pixels = torch.stack([loaded.preprocess(p.image) for p in held_out])
    tokens = loaded.tokenizer([p.name for p in train])
    before = _held_out_metrics(loaded, held_out_pixels, held_out, options.batch_size, rank_metrics)
    best, best_key, best_epoch = copy.deepcopy(model.state_dict()), (before["recall@5"], before["mrr"]), 0

    steps_per_epoch = max(1, len(train) // options.batch_size)
    total = steps_per_epoch * options.epochs
    if on_start:
        on_start(total)
    optimizer = _optimizer(model, options)
    loss_fn = ClipLoss()
    warmup = max(1, min(100, total // 10))
    history: list[dict[str, float]] = []
    stopped, step, epoch, stale = "epochs", 0, 0, 0
    for epoch in range(1, options.epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for start in range(0, steps_per_epoch * options.batch_size, options.batch_size):
            batch = order[start : start + options.batch_size]
            images = torch.stack([loaded.preprocess_train(train[i].image) for i in batch]).to(loaded.device)
            image_features, text_features, scale = model(images, tokens[batch].to(loaded.device))[:3]
            loss = loss_fn(image_features, text_features, scale)
            for group in optimizer.param_groups:
                group["lr"] = options.lr * _schedule(step, warmup, total)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.item()))
            step += 1
            if progress:
                progress(1)
            if time.monotonic() > deadline:
                stopped = "time limit"
                break
        metrics = _held_out_metrics(loaded, held_out_pixels, held_out, options.batch_size, rank_metrics)
        history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), **metrics})
        if on_epoch:
            on_epoch(epoch, float(np.mean(losses)), metrics)
        if (metrics["recall@5"], metrics["mrr"]) > best_key:
            best, best_key, best_epoch, stale = (
                copy.deepcopy(model.state_dict()),
                (metrics["recall@5"], metrics["mrr"]),
                epoch,
                0,
            )
        else:
            stale += 1
        if stopped == "time limit":
            break
        if stale >= options.patience:
            stopped = "early stopping"
            break

    model.load_state_dict(best)
    after = _held_out_metrics(loaded, held_out_pixels, held_out, options.batch_size, rank_metrics)
    config, checkpoint = _write_model(loaded, best, Path(out_dir))
    result = FinetuneResult(
        before=before,
        after=after,
        train_pairs=len(train),
        held_out_pairs=len(held_out),
        epochs_run=epoch,
        best_epoch=best_epoch,
        stopped=stopped,
        seconds=round(time.monotonic() - started, 1),
        config_path=str(config),
        checkpoint_path=str(checkpoint),
        history=history,
    )
    report = {**asdict(result), "model": model_spec, "pretrained": pretrained, "options": asdict(options)}
    durable.write_text(Path(out_dir) / REPORT_FILE, json.dumps(report, indent=2))
    return result
