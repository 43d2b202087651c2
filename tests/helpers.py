"""Test helpers: the tiny open_clip model, generated images, and a deterministic fake embedder."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from lookalike.embed import Embedder

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def build_tiny_model(folder: Path, seed: int = 1234) -> tuple[Path, Path]:
    """Write the tiny model's config JSON and a random state dict saved with torch.save.

    Nothing is downloaded: the architecture is built from the config and its random
    weights saved the way a user's fine-tuned checkpoint would be.
    """
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "tiny-clip.json"
    config.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CONFIG)
    checkpoint = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return config, checkpoint


PALETTE = [
    (220, 30, 30),
    (30, 160, 60),
    (40, 70, 210),
    (240, 200, 30),
    (150, 50, 180),
    (20, 180, 190),
    (250, 130, 20),
    (90, 90, 90),
    (240, 240, 240),
    (120, 70, 30),
]


def make_image(seed: int, size: tuple[int, int] = (160, 120), mode: str = "RGB") -> Image.Image:
    """A distinct, deterministic picture: a coloured background with shapes and stripes."""
    rng = np.random.default_rng(seed)
    base = PALETTE[seed % len(PALETTE)]
    image = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(6):
        x0, y0 = int(rng.integers(0, max(1, w - 10))), int(rng.integers(0, max(1, h - 10)))
        x1, y1 = x0 + int(rng.integers(5, max(6, w // 2))), y0 + int(rng.integers(5, max(6, h // 2)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    step = int(rng.integers(6, 20))
    for x in range(0, w, step * 2):
        draw.line((x, 0, x, h), fill=tuple(255 - c for c in base), width=2)
    return image.convert(mode) if mode != "RGB" else image


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_images(folder: Path, count: int, start: int = 0, suffix: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"img_{i:04d}{suffix}"
        make_image(i).save(path)
        paths.append(path)
    return paths


class FakeEmbedder(Embedder):
    """Deterministic vectors without a model.

    Images: a coarse colour layout (an 8x8 thumbnail), so identical pictures give identical
    vectors and different pictures differ. Texts: a hash of each word, so a text that
    names a ``concept`` in ``concepts`` lands on that concept's direction.
    """

    def __init__(self, dim: int = 192, concepts: dict[str, npt.NDArray[np.float32]] | None = None) -> None:
        super().__init__(batch_size=8)
        self._dim = dim
        self.concepts = concepts or {}
        self.image_calls = 0

    @property
    def name(self) -> str:
        return f"fake-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _load(self) -> None:
        pass

    def _encode_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.floating]:
        self.image_calls += len(images)
        rows = []
        for image in images:
            pixels = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32).reshape(-1) / 255.0
            row = np.zeros(self._dim, dtype=np.float32)
            row[: min(self._dim, pixels.size)] = pixels[: self._dim] - 0.5
            rows.append(row)
        return np.stack(rows)

    def _encode_texts(self, texts: Sequence[str]) -> npt.NDArray[np.floating]:
        rows = []
        for text in texts:
            if text in self.concepts:
                rows.append(self.concepts[text])
                continue
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
            rows.append(np.random.default_rng(seed).normal(size=self._dim).astype(np.float32))
        return np.stack(rows)


MULTILINGUAL_CORPUS = [
    "a samoyed dog in the snow",
    "萨摩耶 狗 在 雪地里",
    "红色 碎花 连衣裙",
    "red floral dress",
    "собака самоед на снегу",
    "robe à fleurs rouge",
    "白色 运动鞋",
    "white sneakers",
]


def build_tiny_multilingual_model(folder: Path, seed: int = 99) -> tuple[Path, Path]:
    """The tiny model with a Hugging Face XLM-RoBERTa text tower, as open_clip's multilingual models have.

    The tower's config and a small SentencePiece tokenizer trained on a few sentences in four
    languages are saved to a local folder, and the open_clip config names that folder, the way
    a user points an offline machine at a downloaded xlm-roberta-base. Nothing is downloaded.
    """
    import open_clip
    import torch
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    text_dir = folder / "tiny-xlm-roberta"
    text_dir.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = SentencePieceUnigramTokenizer()
    trainer.train_from_iterator(
        MULTILINGUAL_CORPUS * 4, vocab_size=160, special_tokens=specials, unk_token="<unk>"
    )
    tokenizer = XLMRobertaTokenizerFast(
        tokenizer_object=trainer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>",
    )  # fmt: skip
    tokenizer.save_pretrained(str(text_dir))
    XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    ).save_pretrained(str(text_dir))
    config = {
        "embed_dim": 32,
        "vision_cfg": TINY_CONFIG["vision_cfg"],
        "text_cfg": {
            "hf_model_name": str(text_dir),
            "hf_tokenizer_name": str(text_dir),
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": "mlp",
        },
    }
    config_path = folder / "tiny-xlm-roberta-clip.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(
        embed_dim=32,
        vision_cfg=config["vision_cfg"],
        text_cfg={**config["text_cfg"], "hf_model_pretrained": False},
    )
    checkpoint = folder / "tiny-xlm-roberta-clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return config_path, checkpoint


class FakeDetector:
    """Fixed raw boxes for every image, passed through the real clipping and filtering.

    Per image (160 × 120 from make_image): a confident box that runs past the right edge,
    a smaller one, a tiny one (dropped by size) and an unsure one (dropped by score).
    """

    name = "fake"
    RAW = (
        ((60.0, 10.0, 400.0, 110.0), "handbag", 0.9),  # clipped to x1 = 160
        ((5.0, 20.0, 55.0, 90.0), "shoe", 0.6),
        ((0.0, 0.0, 10.0, 10.0), "tie", 0.95),  # 10 px: too small
        ((10.0, 10.0, 150.0, 110.0), "person", 0.1),  # below the score
    )

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> None:
        pass

    def detect(self, image: Image.Image) -> list:  # type: ignore[type-arg]
        from lookalike.embed.detect import select_detections

        self.calls += 1
        return select_detections(self.RAW, image.width, image.height, min_score=0.25, min_size=32)


@contextmanager
def captured_logs(name: str) -> Iterator[list[logging.LogRecord]]:
    """Records a logger (and its children) emits at ERROR and above, whatever the logging setup
    (also under ``pytest -p no:logging``, where caplog does not exist)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(name)
    handler = Keep(logging.ERROR)
    previous = logger.level
    if not logger.isEnabledFor(logging.ERROR):  # an earlier test's CLI setup left the root at CRITICAL
        logger.setLevel(logging.ERROR)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
