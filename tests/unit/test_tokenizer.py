"""lookalike's torch-free CLIP tokenizer gives exactly open_clip's token ids."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lookalike.embed.tokenizer import tokenizer_for, vocab_path

open_clip = pytest.importorskip("open_clip")

TEXTS = [
    "red dress",
    "red floral dress",
    "萨摩耶",
    "一只白色的萨摩耶犬在雪地里",
    "かわいい柴犬",
    "강아지 사진",
    "a photo of a 🐶 dog 🐕‍🦺 with 👩‍👩‍👧 and 🇫🇷",
    "Ça c'est l'été, naïve café",
    "&amp; HTML &lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39;",
    "mojibake Ã©tÃ© and â€œcurlyâ€",
    "\x1b[31mred\x1b[0m terminal colours",
    "ＦＵＬＬＷＩＤＴＨ letters and ﬁne ligatures",
    "It's we've they'll I'd you're he's",
    "IT'S WE'VE THEY'LL",
    "12345 678.9 3.14159 1e-6",
    "tabs\tand\nnew\r\nlines   and    spaces",
    "",
    "   ",
    "!!!???...",
    "<start_of_text> literal special tokens <end_of_text>",
    "x" * 500,
    " ".join(["word"] * 100),
    "萨摩耶" * 80,
    "🐶" * 120,
    "Straße ΣΊΣΥΦΟΣ İstanbul ǅ",
    "Zürich—Genève – “quotes” ‘single’",
    "\u200b zero\u200dwidth \ufeff bom",
]


def _random_texts(count: int) -> list[str]:
    rng = random.Random(7)
    alphabet = "abcdefghij KLMNOP 0123 .,'!-_ éüß 萨摩耶犬 🐶🎉 ضاد Ωλ"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(count)]


def test_tokens_are_open_clips_exactly() -> None:
    ours = tokenizer_for("ViT-B-32", {"text_cfg": {"context_length": 77}})
    assert ours is not None
    theirs = open_clip.get_tokenizer("ViT-B-32")
    texts = TEXTS + _random_texts(300)
    mine = ours(texts)
    reference = theirs(texts).numpy()
    assert mine.dtype == np.int64 and mine.shape == reference.shape
    differ = [texts[i] for i in range(len(texts)) if not np.array_equal(mine[i], reference[i])]
    assert not differ, differ[:5]


def test_long_text_is_cut_to_the_context_length_and_ends_with_the_end_token() -> None:
    ours = tokenizer_for("tiny", {"text_cfg": {"context_length": 16}})
    assert ours is not None
    tokens = ours(["word " * 40, "short"])
    assert tokens.shape == (2, 16)
    assert tokens[0, 0] == ours.sot and tokens[0, -1] == ours.eot
    assert tokens[1, 2] == ours.eot and not tokens[1, 3:].any()
    reference = open_clip.tokenizer.SimpleTokenizer(context_length=16)(["word " * 40, "short"]).numpy()
    assert np.array_equal(tokens, reference)


def test_other_tokenizers_are_left_to_open_clip() -> None:
    assert (
        tokenizer_for("xlm-roberta-base-ViT-B-32", {"text_cfg": {"hf_tokenizer_name": "xlm-roberta-base"}})
        is None
    )
    assert tokenizer_for("ViT-B-16-SigLIP", {"text_cfg": {}}) is None
    assert tokenizer_for("x", {"text_cfg": {"tokenizer_kwargs": {"clean": "canonicalize"}}}) is None


def test_the_vocabulary_is_found_without_importing_open_clip() -> None:
    path = vocab_path()
    assert path is not None and path.name == "bpe_simple_vocab_16e6.txt.gz"


def test_ascii_text_that_skips_ftfy_tokenizes_as_open_clip_does() -> None:
    """The fast path (printable ASCII without ``&`` skips ftfy): any ASCII text, control characters
    and entities included, still gives open_clip's ids."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ours = tokenizer_for("ViT-B-32", {"text_cfg": {"context_length": 77}})
    theirs = open_clip.get_tokenizer("ViT-B-32")
    assert ours is not None

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(st.characters(max_codepoint=0x7F), max_size=60), min_size=1, max_size=8))
    def check(texts: list[str]) -> None:
        assert np.array_equal(ours(texts), theirs(texts).numpy()), texts

    check()
