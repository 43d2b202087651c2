"""open_clip models built in PyTorch: a built-in architecture name or a model-config JSON, with a tag, a
local checkpoint or seeded random weights (the full load of ``openclip.OpenClipEmbedder``, and
``lookalike finetune``'s model)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.embed.base import RANDOM_WEIGHTS, resolve_device
from lookalike.embed.weights import PREPROCESS_KWARGS, resolve_tag
from lookalike.errors import ConfigError, ModelUnavailableError

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
# Text towers trained on many languages, recognised by their model or tokenizer name.
_MULTILINGUAL_MARKERS = ("xlm", "mt5", "multilingual", "i18n", "labse", "mbert")


def offline_help(model: str, pretrained: str, reason: str) -> str:
    return (
        f"Cannot load the weights '{pretrained}' for model '{model}': {reason}\n\n"
        "lookalike fetches open_clip weights from the Hugging Face hub on first use, and this machine "
        "could not get them (no network, or the hub is unreachable). Download the checkpoint on a machine "
        "that is online (for example open_clip_pytorch_model.bin from the model's hub page) and pass the "
        "local file: `--pretrained /path/to/open_clip_pytorch_model.bin` (or LOOKALIKE_PRETRAINED). A "
        "custom or fine-tuned architecture also needs its config: `--model /path/to/model-config.json`. "
        "Weights already in the Hugging Face cache are used without a network; set HF_HUB_OFFLINE=1 to "
        "fail fast instead of retrying."
    )


def _register_config_file(path: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Register an open_clip model-config JSON; returns its name, its config and its preprocessing.

    A hub-style file (``{"model_cfg": ..., "preprocess_cfg": ...}``, what ``lookalike finetune``
    writes) also names the image mean, std and resize the weights were trained with.
    """
    import open_clip

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read the model config {path}: {exc}") from exc
    # Hub-style open_clip_config.json wraps the architecture in "model_cfg".
    cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= cfg.keys():
        raise ConfigError(
            f"{path} is not an open_clip model config: it needs 'embed_dim', 'vision_cfg' and 'text_cfg'."
        )
    # open_clip names a registered config after its file stem; a private copy keeps the
    # user's file name from shadowing a built-in architecture of the same name.
    name = f"lookalike-{path.stem}"
    folder = Path(tempfile.mkdtemp(prefix="lookalike-model-"))
    (folder / f"{name}.json").write_text(json.dumps(cfg), encoding="utf-8")
    open_clip.add_model_config(folder / f"{name}.json")
    preprocess = data.get("preprocess_cfg", {}) if isinstance(data, dict) else {}
    kwargs = {kw: preprocess[k] for k, kw in PREPROCESS_KWARGS.items() if preprocess.get(k) is not None}
    return name, cfg, kwargs


def resolve_architecture(model: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    import open_clip

    path = Path(model).expanduser()
    if model.endswith(".json") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"Model config file not found: {path}")
        return _register_config_file(path)
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        known = ", ".join(m for m in open_clip.list_models() if m.startswith(("ViT-B", "ViT-L", "RN50")))
        from lookalike.embed.registry import families

        known += "".join(f", {name} (image only)" for f in families() if f.image_only for name in f.known)
        raise ConfigError(
            f"Unknown open_clip model '{model}'. Pass an architecture name (e.g. {known}, ...; "
            "`python -c 'import open_clip; print(open_clip.list_models())'` lists all) "
            "or the path of an open_clip model-config JSON file."
        )
    return model, cfg, {}


@dataclass
class OpenClipModel:
    """A loaded open_clip model with what feeds it; the embedder and ``lookalike finetune`` share it."""

    model: Any
    preprocess_train: Any
    preprocess: Any
    tokenizer: Any
    arch: str
    cfg: dict[str, Any]
    preprocess_kwargs: dict[str, Any]
    device: str


def _hf_text_name(cfg: dict[str, Any]) -> str:
    text_cfg = cfg.get("text_cfg", {})
    return str(text_cfg.get("hf_tokenizer_name") or text_cfg.get("hf_model_name") or "")


def is_multilingual(arch: str, cfg: dict[str, Any]) -> bool:
    names = f"{arch} {_hf_text_name(cfg)}".lower()
    return any(marker in names for marker in _MULTILINGUAL_MARKERS)


def _hf_help(cfg: dict[str, Any], reason: str) -> str:
    name = _hf_text_name(cfg)
    return (
        f"The text tower of this model comes from Hugging Face transformers ({name}) and cannot be built: "
        f"{reason}\n\nInstall the extra (`pip install 'lookalike[multilingual]'`), and on a machine without "
        f"network put the tower's config and tokenizer where it can be read: download them online "
        f"(`huggingface-cli download {name}`) into the Hugging Face cache, or save them to a folder and set "
        "hf_model_name and hf_tokenizer_name to that folder in a model-config JSON (`--model config.json`)."
    )


def _checkpoint(model_spec: str, arch: str, pretrained: str) -> str | None:
    """What open_clip's ``pretrained`` gets: None (random), a file path or a known tag."""
    import open_clip

    value = pretrained.strip()
    if value.lower() in RANDOM_WEIGHTS or not value:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return str(path)
    if value.endswith(_CHECKPOINT_SUFFIXES) or "/" in value or "\\" in value:
        raise ModelUnavailableError(
            offline_help(model_spec, value, f"the checkpoint file {path} does not exist.")
        )
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if value not in tags:
        hint = f"Known tags for {arch}: {', '.join(tags)}." if tags else ""
        raise ConfigError(
            f"'{value}' is neither a pretrained tag of {arch} nor an existing checkpoint file. "
            f"{hint} Use `--pretrained random` for random weights."
        )
    return value


def load_open_clip(model_spec: str, pretrained: str, device: str = "auto") -> OpenClipModel:
    """Build an open_clip model from a name or config file and a tag, a local checkpoint or 'random'.

    Raises:
        ConfigError: the model or tag is unknown.
        ModelUnavailableError: the weights cannot be read, downloaded, or do not fit.
    """
    import open_clip
    import torch

    arch, cfg, preprocess_kwargs = resolve_architecture(model_spec)
    checkpoint = _checkpoint(model_spec, arch, pretrained)
    if checkpoint is not None and not Path(checkpoint).is_file():
        weights = resolve_tag(arch, checkpoint)
        if weights is None:
            raise ModelUnavailableError(
                offline_help(
                    model_spec, checkpoint, "the hub cannot be reached and the weights are not cached."
                )
            )
        checkpoint, preprocess_kwargs = weights.pretrained, weights.preprocess
    device = resolve_device(device)
    try:
        # Random weights are seeded, so that every process builds the same model and
        # vectors indexed by one run match queries from the next.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, preprocess_train, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=checkpoint, device=device, **preprocess_kwargs
            )
        tokenizer = open_clip.get_tokenizer(arch)
    except (RuntimeError, AssertionError) as exc:
        # open_clip reports a state dict that does not fit as RuntimeError or AssertionError.
        text = str(exc)
        if "transformers" in text:
            raise ModelUnavailableError(_hf_help(cfg, text)) from exc
        if "download" in text.lower() or "hub" in text.lower():
            raise ModelUnavailableError(offline_help(model_spec, pretrained, "the download failed.")) from exc
        raise ModelUnavailableError(
            f"The checkpoint '{pretrained}' does not fit the model '{model_spec}': "
            f"{text.splitlines()[0] if text else exc!r}. Pass the model config the checkpoint was "
            "trained with (`--model NAME` or `--model config.json`)."
        ) from exc
    except ImportError as exc:
        raise ModelUnavailableError(_hf_help(cfg, f"{exc}")) from exc
    except (OSError, ValueError, KeyError) as exc:
        if _hf_text_name(cfg):
            raise ModelUnavailableError(_hf_help(cfg, f"{exc}".splitlines()[0])) from exc
        raise ModelUnavailableError(f"Cannot load '{pretrained}' for '{model_spec}': {exc}") from exc
    model.eval()
    return OpenClipModel(model, preprocess_train, preprocess, tokenizer, arch, cfg, preprocess_kwargs, device)
