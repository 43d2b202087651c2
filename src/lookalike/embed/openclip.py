"""open_clip models: a built-in architecture name or a model-config JSON, with a tag or a local checkpoint."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.embed import exported
from lookalike.embed.base import (
    RANDOM_WEIGHTS,
    Embedder,
    Vectors,
    batched,
    l2_normalise,
    resolve_device,
    weights_label,
)
from lookalike.embed.probe import PROBE_TEXTS, probe_photos
from lookalike.embed.sessions import LABELS, RuntimeName, text_threads
from lookalike.embed.tokenizer import tokenizer_for, trim_tokens
from lookalike.embed.weights import PREPROCESS_KWARGS, resolve_tag
from lookalike.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)


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


def _resolve_architecture(model: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    import open_clip

    path = Path(model).expanduser()
    if model.endswith(".json") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"Model config file not found: {path}")
        return _register_config_file(path)
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        known = ", ".join(m for m in open_clip.list_models() if m.startswith(("ViT-B", "ViT-L", "RN50")))
        known += ", efficientnet-lite0 (image only)"
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

    arch, cfg, preprocess_kwargs = _resolve_architecture(model_spec)
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


class OpenClipEmbedder(Embedder):
    """CLIP image and text towers from open_clip, on CUDA when present.

    A process that needs one tower of a model exported before runs just that tower, from the export
    file the full load chose for it, without torch or open_clip (``exported.py``); anything else
    loads the whole model. ``probe``: ``now`` exports and probes the runtimes in this process on the
    model's first use here (``auto``); ``background`` runs on PyTorch fp32 meanwhile and leaves the
    export and the probe to a background process (``background.py``).
    """

    def __init__(
        self,
        model: str,
        pretrained: str,
        device: str = "auto",
        batch_size: int = 32,
        *,
        runtime: str = "auto",
        cache_dir: str | Path | None = None,
        text_threads: int = 0,
        probe: str = "now",
    ) -> None:
        super().__init__(batch_size)
        self._text_threads = text_threads  # 0: sessions.text_threads decides
        self.model_spec = model
        self.pretrained = pretrained
        # open_clip is imported only for what its config files cannot tell.
        self._arch, self._cfg, _ = exported.architecture(model) or _resolve_architecture(model)
        self._device_pref = device
        self._runtime_pref = runtime
        self._probe = probe
        self._cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "lookalike-cache").expanduser()
        self._runtime: Any = None  # the full load's (runtimes.Runtime)
        self._logit_scale: float | None = None
        # What each tower runs on, set by the full load or by loading the tower alone.
        self._tokenizer: Callable[[list[str]], Any] | None = None  # open_clip's, or tokenizer.ClipTokenizer
        self._trim: tuple[str, int | None] | None = None
        self._encode_text: Callable[[npt.NDArray[np.int64]], npt.NDArray[Any]] | None = None
        self._prepare: Callable[[Image.Image], npt.NDArray[np.float32]] | None = None
        self._encode_image: Callable[[npt.NDArray[np.float32]], npt.NDArray[Any]] | None = None
        self._manifest: exported.Exported | None = None
        self._looked_for_manifest = False
        self.device = "cpu"

    @property
    def name(self) -> str:
        return f"{Path(self.model_spec).name}:{weights_label(self.pretrained)}"

    @property
    def dim(self) -> int:
        return int(self._cfg["embed_dim"])

    @property
    def multilingual(self) -> bool:
        return is_multilingual(self._arch, self._cfg)

    @property
    def logit_scale(self) -> float:
        if self._logit_scale is None:
            found = self._exported()
            if found is not None:
                return found.logit_scale
            self.load()
        assert self._logit_scale is not None
        return self._logit_scale

    @property
    def input_size(self) -> int | None:
        size = self._cfg.get("vision_cfg", {}).get("image_size", 224)
        return int(max(size) if isinstance(size, (list, tuple)) else size)

    @property
    def runtime(self) -> str:
        self.load()
        return str(self._runtime.label)

    @property
    def runtime_choice(self) -> dict[str, Any]:
        from lookalike.embed.runtimes import SplitRuntime

        self.load()
        runtime = self._runtime
        if not isinstance(runtime, SplitRuntime):
            return super().runtime_choice
        probes = {LABELS[RuntimeName(name)]: figures for name, figures in runtime.probes.items()}
        return {"image": runtime.image_label, "text": runtime.text_label, "probes": probes}

    # -- loading -------------------------------------------------------------------------------

    def load_text(self) -> None:
        if self._encode_text is None and not self._load_alone("text"):
            self.load()

    def load_image(self) -> None:
        if self._encode_image is None and not self._load_alone("image"):
            self.load()

    def _identity(self) -> str | None:
        return exported.identity(
            self.model_spec, self.pretrained, self._runtime_pref, self._device_pref, self._cache_dir
        )

    def _exported(self) -> exported.Exported | None:
        """The manifest of this model's export on this machine, looked for once (None: none usable)."""
        if not self._looked_for_manifest:
            if self._device_pref in ("auto", "cpu"):
                key = self._identity()
                self._manifest = exported.read(self._cache_dir, key) if key else None
            self._looked_for_manifest = True
        return self._manifest

    def _load_alone(self, tower: str) -> bool:
        """Run only this tower, from the export the full load chose for it; False where that cannot
        be vouched for (then the whole model loads)."""
        with self._load_lock:
            if self._loaded or (self._encode_text if tower == "text" else self._encode_image) is not None:
                return True
            found = self._exported()
            if found is None:
                return False
            try:
                if tower == "text":
                    tokenizer = tokenizer_for(self._arch, self._cfg)
                    encode = None
                    if tokenizer is not None:
                        encode = exported.text_alone(found, tokenizer, text_threads(self._text_threads))
                    if encode is not None:
                        self._tokenizer, self._trim, self._encode_text = tokenizer, found.trim, encode
                else:
                    encode = exported.image_alone(found)
                    if encode is not None:
                        self._prepare, self._encode_image = found.prep, encode
            except Exception as exc:  # a runtime fails to load in many ways: the full load then decides
                log.info("the exported %s tower did not load (%s); loading the model", tower, exc)
                return False
            if encode is None:
                log.info(
                    "the exported %s tower of %s cannot be vouched for; loading the model", tower, self.name
                )
                return False
            log.info("loaded the %s tower of %s alone", tower, self.name)
            return True

    def _load(self) -> None:
        from lookalike.embed.runtimes import choose_runtime
        from lookalike.embed.towers import text_tower

        loaded = load_open_clip(self.model_spec, self.pretrained, self._device_pref)
        model = loaded.model
        preprocess = loaded.preprocess
        self._prepare = lambda image: np.asarray(preprocess(image).numpy(), dtype=np.float32)
        scale = getattr(model, "logit_scale", None)
        self._logit_scale = float(scale.exp().item()) if scale is not None else 100.0
        self._tokenizer = loaded.tokenizer
        if text_tower(model) is not None:
            self._trim = (str(model.text_pool_type), getattr(model, "text_eos_id", None))
        self.device = loaded.device
        runtime = choose_runtime(
            self._runtime_pref,
            model,
            config=self._cfg,
            device=loaded.device,
            cache_dir=self._cache_dir,
            probe_pixels=np.stack([self._prepare(image) for image in probe_photos()]),
            probe_tokens=self._tokens(PROBE_TEXTS),
            text_threads_wanted=self._text_threads,
            probe_later=self._probe_in_background if self._probe == "background" else None,
        )
        self._runtime = runtime
        self._encode_text, self._encode_image = runtime.texts, runtime.images
        log.info("loaded %s on %s with %s", self.name, loaded.device, runtime.label)
        self._keep_manifest(runtime, preprocess, self._trim)

    def _probe_in_background(self) -> None:
        from lookalike.embed import background

        key = self._identity()
        if key is None:
            return  # the model cannot be known without open_clip: the probe would not be found later
        background.start(
            background.Job(
                self.model_spec,
                self.pretrained,
                self._runtime_pref,
                self._device_pref,
                str(self._cache_dir),
                self._text_threads,
            ),
            key,
            self.name,
        )

    def _keep_manifest(self, runtime: Any, preprocess: Any, trim: tuple[str, int | None] | None) -> None:
        """Record what each tower runs on, so that a later process can run one tower alone."""
        from lookalike.embed.imageprep import describe
        from lookalike.embed.runtimes import exported_towers

        if self.device != "cpu" or self._device_pref not in ("auto", "cpu"):
            return
        towers = {
            tower: exported.Tower.of(name, path, threads)
            for tower, (name, path, threads) in exported_towers(runtime).items()
        }
        key = self._identity() if towers else None
        if key is None:
            return
        assert self._logit_scale is not None and self._prepare is not None
        text_check: tuple[float, ...] = ()
        image_check: tuple[float, ...] = ()
        if "text" in towers:
            text_check = exported.check_vector(runtime.texts(self._tokens([exported.CHECK_TEXT])))
        if "image" in towers:
            image_check = exported.check_vector(runtime.images(self._prepare(probe_photos(1)[0])[None]))
        manifest = exported.Exported(
            towers.get("text"),
            towers.get("image"),
            trim,
            describe(preprocess),
            self._logit_scale,
            text_check,
            image_check,
        )
        exported.write(self._cache_dir, key, manifest)

    # -- encoding ------------------------------------------------------------------------------

    def prepare_image(self, image: Image.Image) -> npt.NDArray[np.float32]:
        self.load_image()
        assert self._prepare is not None
        return self._prepare(image)

    def embed_prepared(self, prepared: Sequence[Any]) -> Vectors:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load_image()
        assert self._encode_image is not None
        encode = self._encode_image
        parts = [encode(np.stack(batch)) for batch in batched(prepared, self.batch_size)]
        return l2_normalise(np.concatenate(parts))

    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]:
        assert self._encode_image is not None and self._prepare is not None
        return self._encode_image(np.stack([self._prepare(image) for image in images]))

    def _tokens(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Token ids for a batch (numpy, whichever tokenizer), cut after the batch's last end-of-text
        token where the tower allows."""
        assert self._tokenizer is not None
        tokens = np.asarray(self._tokenizer(list(texts)), dtype=np.int64)
        return trim_tokens(tokens, *self._trim) if self._trim is not None else tokens

    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]:
        assert self._encode_text is not None
        return self._encode_text(self._tokens(texts))
