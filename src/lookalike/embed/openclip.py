"""open_clip models as embedders: the whole model in PyTorch and the runtime chosen for it, or one tower
of it alone from its export."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.embed import exported, progress
from lookalike.embed.base import Embedder, Vectors, batched, l2_normalise, weights_label
from lookalike.embed.loading import OpenClipModel, is_multilingual, load_open_clip, resolve_architecture
from lookalike.embed.probe import PROBE_TEXTS, probe_photos
from lookalike.embed.sessions import LABELS, RuntimeName, text_threads
from lookalike.embed.tokenizer import tokenizer_for, trim_tokens

__all__ = ["OpenClipEmbedder", "OpenClipModel", "load_open_clip"]

log = logging.getLogger(__name__)

SWITCH_CHECK_S = 10.0


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
        self._arch, self._cfg, _ = exported.architecture(model) or resolve_architecture(model)
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
        self._switch_due: float | None = None  # when to look whether a background probe is done
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
            if found is None or not self._from_export(found, tower):
                return False
            log.info("loaded the %s tower of %s alone", tower, self.name)
            return True

    def _from_export(self, found: exported.Exported, tower: str) -> bool:
        """Run this tower from its export in ``found``, if it gives its check vector; whether it does."""
        encode: Callable[[npt.NDArray[Any]], npt.NDArray[Any]] | None = None
        try:
            if tower == "text":
                tokenizer = tokenizer_for(self._arch, self._cfg)
                if tokenizer is not None:
                    encode = exported.text_alone(found, tokenizer, text_threads(self._text_threads))
                if encode is not None:
                    self._tokenizer, self._trim, self._encode_text = tokenizer, found.trim, encode
            else:
                encode = exported.image_alone(found)
                if encode is not None:
                    self._prepare, self._encode_image = found.prep, encode
        except Exception as exc:  # a runtime fails to load in many ways: the full load then decides
            log.info("the exported %s tower of %s did not load (%s)", tower, self.name, exc)
            return False
        if encode is None:
            log.info("the exported %s tower of %s cannot be vouched for", tower, self.name)
        return encode is not None

    def _switch_when_probed(self) -> None:
        """While a first use's probe runs in the background, this process runs on PyTorch fp32; once the
        probe is done (looked at every ``SWITCH_CHECK_S``), the towers move to the runtimes it chose,
        vouched for like a tower loaded alone. A long ``index`` or a server started on the first use
        then runs at the chosen runtime's speed for the rest of its life."""
        from lookalike.embed import background

        due = self._switch_due
        if due is None or time.monotonic() < due:
            return
        with self._load_lock:
            key = self._identity() if self._switch_due is not None else None
            if key is None:
                self._switch_due = None
                return
            if background.running(self._cache_dir, key):
                self._switch_due = time.monotonic() + SWITCH_CHECK_S
                return
            self._switch_due = None  # done, one way or the other
            found = exported.read(self._cache_dir, key)
            moved = [t for t in ("image", "text") if found is not None and self._from_export(found, t)]
            if found is not None and moved:
                runtimes = {"image": found.image, "text": found.text}
                log.warning(
                    "the runtime probe of %s is done: %s now on %s",
                    self.name,
                    " and ".join(f"{t}s" for t in moved),
                    " and ".join(str(getattr(runtimes[t], "runtime", "?")) for t in moved),
                )

    def _load(self) -> None:
        # Loading takes a few seconds, and a first use here also exports and probes: the user is told
        # when it lasts (every few seconds, by the innermost step under way).
        with progress.step(f"loading {self.name}", quiet=True):
            self._load_whole()

    def _load_whole(self) -> None:
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

    def _probe_in_background(self) -> bool:
        """Leave the export and the probe to a background process; False where it could not find this
        model again (one known only to open_clip): then they run now."""
        from lookalike.embed import background

        key = self._identity()
        if key is None:
            return False
        self._switch_due = time.monotonic() + SWITCH_CHECK_S
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
        return True

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
        self._switch_when_probed()
        assert self._encode_image is not None
        encode = self._encode_image
        parts = [encode(np.stack(batch)) for batch in batched(prepared, self.batch_size)]
        return l2_normalise(np.concatenate(parts))

    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]:
        self._switch_when_probed()
        assert self._encode_image is not None and self._prepare is not None
        return self._encode_image(np.stack([self._prepare(image) for image in images]))

    def _tokens(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Token ids for a batch (numpy, whichever tokenizer), cut after the batch's last end-of-text
        token where the tower allows."""
        assert self._tokenizer is not None
        tokens = np.asarray(self._tokenizer(list(texts)), dtype=np.int64)
        return trim_tokens(tokens, *self._trim) if self._trim is not None else tokens

    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]:
        self._switch_when_probed()
        assert self._encode_text is not None
        return self._encode_text(self._tokens(texts))
