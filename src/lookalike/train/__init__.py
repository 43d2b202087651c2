"""Fine-tuning open_clip models on a catalog's (image, name) pairs; torch loads only when a run starts."""

from __future__ import annotations

from lookalike.train.finetune import FinetuneResult, Options, Pair, finetune

__all__ = ["FinetuneResult", "Options", "Pair", "finetune"]
