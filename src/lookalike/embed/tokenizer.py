"""CLIP's byte-pair tokenizer without torch: the same token ids as open_clip's ``SimpleTokenizer``.

A text query from the command line needs only the text tower and its tokens; open_clip's tokenizer
module imports torch (three seconds) to return a tensor. This one reads open_clip's own vocabulary
file, found without importing open_clip, and returns a numpy array. It covers the models whose
tokenizer open_clip builds as a plain ``SimpleTokenizer`` (``tokenizer_for`` says which); any other
(Hugging Face, SigLIP, a reduction mask) is left to open_clip.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
SPECIAL = ("<start_of_text>", "<end_of_text>")
_MERGES = 49152 - 256 - 2
_NEVER = float("inf")


def vocab_path() -> Path | None:
    """open_clip's BPE vocabulary, located without importing open_clip (None where it is not installed)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE
    return path if path.is_file() else None


def _bytes_to_unicode() -> dict[int, str]:
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def _pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word, word[1:], strict=False))


class ClipTokenizer:
    """open_clip's ``SimpleTokenizer`` with ``clean='lower'``: lower-cased, whitespace-collapsed,
    ftfy-fixed text, split by CLIP's pattern, byte-pair encoded, framed by start and end tokens and
    cut to the context length (the last kept token then becomes the end token)."""

    def __init__(self, vocab: Path, context_length: int = 77) -> None:
        import regex

        self.context_length = context_length
        self._byte_encoder = _bytes_to_unicode()
        with gzip.open(vocab) as handle:
            merges = handle.read().decode("utf-8").split("\n")[1 : _MERGES + 1]
        # Merges stay the vocabulary's "first second" lines (a symbol never holds a space): building
        # 49K tuples cost more than the rest of a query.
        tokens = list(self._byte_encoder.values())
        tokens += [t + "</w>" for t in tokens]
        tokens += [merge.replace(" ", "") for merge in merges]
        tokens += SPECIAL
        self._encoder = dict(zip(tokens, range(len(tokens)), strict=True))
        self._ranks = dict(zip(merges, range(len(merges)), strict=True))
        self._cache: dict[str, str] = {t: t for t in SPECIAL}
        self.sot, self.eot = self._encoder[SPECIAL[0]], self._encoder[SPECIAL[1]]
        self._pattern = regex.compile(
            "|".join(SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def _bpe(self, token: str) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        word = (*token[:-1], token[-1] + "</w>")
        pairs = _pairs(word)
        if not pairs:
            return token + "</w>"
        ranks = self._ranks
        while True:
            bigram = min(pairs, key=lambda pair: ranks.get(f"{pair[0]} {pair[1]}", _NEVER))
            if f"{bigram[0]} {bigram[1]}" not in ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        joined = " ".join(word)
        self._cache[token] = joined
        return joined

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for token in self._pattern.findall(_clean(text)):
            token = "".join(self._byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self._encoder[piece] for piece in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Token ids, one row of ``context_length`` per text, zero-padded."""
        rows = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            rows[i, : len(ids)] = ids
        return rows


def _clean(text: str) -> str:
    """CLIP's cleaning: ftfy, HTML entities twice, whitespace collapsed, lower case. Printable ASCII
    without an ``&`` is what ftfy and the entities leave as it is (a test checks it against ftfy), and
    it is most queries: they skip importing ftfy, a tenth of a second of a command's start."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.strip().split()).strip().lower()


@functools.lru_cache(maxsize=4)
def _tokenizer(vocab: Path, context_length: int) -> ClipTokenizer:
    return ClipTokenizer(vocab, context_length)


def tokenizer_for(arch: str, config: dict[str, Any]) -> ClipTokenizer | None:
    """This tokenizer where open_clip would build a plain ``SimpleTokenizer`` for the model, else None.

    Mirrors ``open_clip.get_tokenizer`` for a model named by a built-in or a registered config: a
    Hugging Face tokenizer name, a SigLIP model or any tokenizer keyword (a reduction mask, another
    cleaning) is open_clip's to build.
    """
    text_cfg = config.get("text_cfg", {})
    if (
        not isinstance(text_cfg, dict)
        or text_cfg.get("hf_tokenizer_name")
        or text_cfg.get("tokenizer_kwargs")
    ):
        return None
    if "siglip" in arch.lower() or arch.startswith(("hf-hub:", "local-dir:")):
        return None
    vocab = vocab_path()
    if vocab is None:
        return None
    return _tokenizer(vocab, int(text_cfg.get("context_length", 77)))


def trim_tokens(
    tokens: npt.NDArray[np.int64], pool_type: str, eos_token_id: int | None
) -> npt.NDArray[np.int64]:
    """Cut the padding after the last end-of-text token of the batch."""
    # CLIP's end-of-text token has the highest id; other tokenizers name theirs.
    ends = (tokens == eos_token_id) if pool_type == "eos" and eos_token_id is not None else tokens
    ends = ends.argmax(axis=1)
    return np.ascontiguousarray(tokens[:, : int(ends.max()) + 1])
