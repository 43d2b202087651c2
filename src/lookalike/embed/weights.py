"""Where a pretrained tag's weights come from: the hub when it answers, else the local cache.

huggingface_hub retries an unreachable hub for about a minute before giving up; a
3-second probe lets an offline user get the advice at once, and weights already in the
cache load without any network.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
# The open_clip model that reads text in many languages (named in advice; light to import).
MULTILINGUAL_HINT = "--model xlm-roberta-base-ViT-B-32 --pretrained laion5b_s13b_b90k"
# The tag's preprocessing, as create_model_and_transforms' keyword arguments.
PREPROCESS_KWARGS = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}


@dataclass(frozen=True)
class Weights:
    """What to hand open_clip: a tag (download) or a local file plus the tag's preprocessing."""

    pretrained: str
    preprocess: dict[str, Any] = field(default_factory=dict)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def reachable(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _cached_hub_file(hf_hub: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = os.path.split(hf_hub.rstrip("/") if hf_hub.endswith("/") else hf_hub)
    if hf_hub.endswith("/"):
        repo_id, filename = hf_hub.rstrip("/"), "open_clip_pytorch_model.bin"
    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    for name in names:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def resolve_tag(arch: str, tag: str) -> Weights | None:
    """Weights for a known tag, or None when they can neither be downloaded nor found cached."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    hf_hub = str(cfg.get("hf_hub", ""))
    url = str(cfg.get("url", ""))
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hf_hub else url
    if not hub_offline() and endpoint and reachable(endpoint):
        return Weights(tag)
    cached = _cached_hub_file(hf_hub) if hf_hub else None
    if cached is None and url:
        candidate = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        cached = candidate if os.path.isfile(candidate) else None
    if cached is None:
        return None
    return Weights(cached, {kw: cfg[k] for k, kw in PREPROCESS_KWARGS.items() if cfg.get(k) is not None})
