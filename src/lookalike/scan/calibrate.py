"""Label thresholds from labelled examples: a precision-recall sweep per label, written back into the TOML.

For each label, its examples are the positives and every other example (another label, or
``none``) a negative. Sweeping the threshold down the scores, the chosen one is the lowest
whose precision still reaches the target: the most recall at that precision. A score counts
only where the label also beats its negative prompts, as when it is applied.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookalike.errors import ConfigError

NONE = "none"


@dataclass(frozen=True)
class Example:
    line: int
    image: str
    label: str  # a label's name, or "none"


@dataclass(frozen=True)
class Calibration:
    label: str
    positives: int
    negatives: int
    threshold: float | None  # None: no threshold reaches the target precision
    precision: float
    recall: float


def load_examples(path: str | Path, labels: list[str]) -> list[Example]:
    """``image,label`` rows (a header first); images relative to the file's folder; label or ``none``."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"Examples file not found: {file}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the examples file {file}: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"image", "label"} <= {f.strip() for f in reader.fieldnames}:
        raise ConfigError(
            f"{file.name} needs a header with the columns image,label (label: a label name or none)."
        )
    known = set(labels)
    examples = []
    for row in reader:
        line = reader.line_num
        image = (row.get("image") or "").strip()
        label = (row.get("label") or "").strip()
        if not image:
            raise ConfigError(f"{file.name}, line {line}: no image.")
        if label != NONE and label not in known:
            raise ConfigError(
                f"{file.name}, line {line}: {label!r} is not a label of the label file "
                f"({', '.join(sorted(known))}) nor 'none'."
            )
        resolved = Path(image).expanduser()
        examples.append(
            Example(line, str(resolved if resolved.is_absolute() else file.parent / resolved), label)
        )
    if not examples:
        raise ConfigError(f"{file.name} holds no examples.")
    return examples


def sweep(
    scores: npt.NDArray[np.float32], positive: npt.NDArray[np.bool_], target: float, label: str = ""
) -> Calibration:
    """The lowest threshold whose precision reaches ``target``, with its precision and recall."""
    total = int(positive.sum())
    negatives = len(positive) - total
    if total == 0:
        return Calibration(label, 0, negatives, None, 0.0, 0.0)
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    true_pos = np.cumsum(hits)
    kept = np.arange(1, len(ranked) + 1)
    # A threshold keeps every score at or above it: only the last of equal scores is a cut.
    cuts = np.nonzero(np.append(ranked[1:] != ranked[:-1], True) & np.isfinite(ranked))[0]
    precision = true_pos[cuts] / kept[cuts]
    good = np.nonzero(precision >= target)[0]
    if not len(good):
        return Calibration(label, total, negatives, None, float(precision.max(initial=0.0)), 0.0)
    best = cuts[good[np.argmax(true_pos[cuts][good])]]  # most recall; among equals the highest threshold
    return Calibration(
        label,
        total,
        negatives,
        float(ranked[best]),
        float(true_pos[best] / kept[best]),
        float(true_pos[best] / total),
    )


_HEADER = re.compile(r"^\s*\[\s*labels\s*\..*\]\s*(#.*)?$")
_THRESHOLD = re.compile(r"^(\s*)threshold\s*=.*$")


def with_thresholds(text: str, thresholds: dict[str, float]) -> str:
    """The label file's text with each named label's ``threshold`` set (added when missing); all else kept."""
    lines = text.splitlines()
    out: list[str] = []
    current: str | None = None
    done: set[str] = set()

    def close_table() -> None:
        if current in thresholds and current not in done:
            # Insert right after the header, so that it stays inside the table.
            header = max(i for i, line in enumerate(out) if _HEADER.match(line))
            out.insert(header + 1, f"threshold = {thresholds[current]!r}")
            done.add(current)

    for line in lines:
        if line.lstrip().startswith("["):
            close_table()
            current = _label_of(line) if _HEADER.match(line) else None
            out.append(line)
            continue
        match = _THRESHOLD.match(line)
        if current in thresholds and match and current not in done:
            out.append(f"{match.group(1)}threshold = {thresholds[current]!r}")
            done.add(current)
            continue
        out.append(line)
    close_table()
    result = "\n".join(out) + "\n"
    parsed = tomllib.loads(result)["labels"]  # the text still reads, and says what was meant
    for name, value in thresholds.items():
        assert parsed[name]["threshold"] == value, name
    return result


def _label_of(header: str) -> str | None:
    try:
        table = tomllib.loads(header.split("#", 1)[0].strip() + "\n")
    except tomllib.TOMLDecodeError:
        return None
    labels = table.get("labels", {})
    return next(iter(labels)) if len(labels) == 1 else None
