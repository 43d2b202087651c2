"""Label sets: named concepts described by text prompts, scored against image vectors.

A label's vector is the normalised mean of its prompts' normalised text embeddings (the
zero-shot recipe of the CLIP paper). A label matches an image when its cosine reaches the
label's threshold and beats every one of the label's negative prompts.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookalike.embed import Embedder, Vectors, l2_normalise
from lookalike.errors import ConfigError

DEFAULT_THRESHOLD = 0.25
"""Cosine at which a label matches when its TOML gives none (CLIP text-image matches score ~0.25-0.35)."""


@dataclass(frozen=True)
class LabelSpec:
    name: str
    prompts: tuple[str, ...]
    threshold: float = DEFAULT_THRESHOLD
    negative_prompts: tuple[str, ...] = ()


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a non-empty list of non-empty strings.")
    return tuple(value)


def load_labels(path: str | Path) -> list[LabelSpec]:
    """Read ``[labels.NAME]`` tables with ``prompts``, optional ``threshold`` and ``negative_prompts``."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"Label file not found: {file}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the label file {file}: {exc}") from exc
    return parse_labels(text, file.name)


def parse_labels(text: str, name: str = "labels") -> list[LabelSpec]:
    """Label tables from TOML text; ``name`` says where it came from in error messages."""
    file = name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Cannot read the label file {file}: {exc}") from exc
    tables = data.get("labels")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(
            f"{file} defines no labels. Write one table per label, e.g.\n\n"
            '[labels.samoyed]\nprompts = ["a photo of a samoyed", "a white fluffy dog"]\nthreshold = 0.27\n'
        )
    specs = []
    for label, table in tables.items():
        where = f"{file}: labels.{label}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table with a 'prompts' list.")
        unknown = set(table) - {"prompts", "threshold", "negative_prompts"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}.")
        threshold = table.get("threshold", DEFAULT_THRESHOLD)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not -1 <= threshold <= 1:
            raise ConfigError(f"{where}.threshold must be a number between -1 and 1.")
        specs.append(
            LabelSpec(
                name=label,
                prompts=_strings(table.get("prompts"), f"{where}.prompts"),
                threshold=float(threshold),
                negative_prompts=_strings(
                    table.get("negative_prompts", []) or [], f"{where}.negative_prompts"
                )
                if table.get("negative_prompts")
                else (),
            )
        )
    return specs


@dataclass(frozen=True)
class Scores:
    """Per image (rows) and label (columns): cosine, softmax probability, and the decision."""

    cosine: npt.NDArray[np.float32]
    probability: npt.NDArray[np.float32]
    matched: npt.NDArray[np.bool_]

    @property
    def best(self) -> npt.NDArray[np.intp]:
        return np.argmax(self.cosine, axis=1)


class LabelSet:
    """Label vectors built once with an embedder, then applied to any number of image vectors."""

    def __init__(self, specs: list[LabelSpec], embedder: Embedder) -> None:
        if not specs:
            raise ConfigError("No labels to score.")
        self.specs = specs
        self.names = [spec.name for spec in specs]
        self.vectors = l2_normalise(
            np.stack([embedder.embed_texts(spec.prompts).mean(axis=0) for spec in specs])
        )
        self.thresholds = np.array([spec.threshold for spec in specs], dtype=np.float32)
        self.negatives: list[Vectors | None] = [
            embedder.embed_texts(spec.negative_prompts) if spec.negative_prompts else None for spec in specs
        ]
        self.logit_scale = embedder.logit_scale

    def score(self, images: Vectors) -> Scores:
        cosine = (images @ self.vectors.T).astype(np.float32)
        logits = cosine * self.logit_scale
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probability = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        matched = cosine >= self.thresholds[None, :]
        for column, negatives in enumerate(self.negatives):
            if negatives is not None:
                matched[:, column] &= cosine[:, column] > (images @ negatives.T).max(axis=1)
        return Scores(cosine, probability, matched)
