"""Keyword search over ``name``, ``category`` and ``tags``: tokens, and BM25 over the read index.

The keyword index is not a second store of the rows: it is derived from the read index's own
segments, one posting list per body of rows (made from its Arrow columns on first use and kept with
the body, like its item-id lookup), and every search scores the rows that snapshot's ``alive`` masks
and the window leave. So it holds exactly what the read index holds, after any insert, delete, purge,
month drop or rebuild, with nothing of its own to update, save or repair. The collection statistics
of BM25 (rows, their mean length, each term's document frequency) are counted over the snapshot's live
rows, once per snapshot, as Lucene and Milvus count them over what a segment holds, so a deleted row
neither answers nor weighs.

Tokens: Unicode NFKC, case-folded; words of letters, digits and marks ("levi's 501" → levi, levis,
501: a word with an English possessive is found with and without it; other apostrophes join);
scripts written without spaces (Chinese, Japanese, Korean, Thai) become overlapping character
pairs ("萨摩耶" → 萨摩, 摩耶), a lone such character itself.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from lookalike.store.segments import Kept, Segment

K1 = 1.2
B = 0.75
"""BM25's term-frequency saturation and length normalisation (Lucene's and Milvus' defaults)."""
KEYWORD_FIELDS = ("name", "category", "tags")

_UNSPACED = re.compile(
    "["
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003134f"  # CJK extensions B-G
    "]+"
)


@functools.cache
def _word() -> re.Pattern[str]:
    """Letters, digits and combining marks (``\\w`` leaves out marks such as Devanagari vowel signs),
    joined by apostrophes. Made on first use: listing the marks takes a few tens of milliseconds."""
    marks: list[str] = []
    start = None
    for code in range(0x300, 0x10000):
        mark = unicodedata.category(chr(code))[0] == "M"
        if mark and start is None:
            start = code
        elif not mark and start is not None:
            marks.append(f"{re.escape(chr(start))}-{re.escape(chr(code - 1))}")
            start = None
    char = f"(?:[^\\W_]|[{''.join(marks)}])"
    return re.compile(f"{char}+(?:['’]{char}+)*")


def _words(text: str) -> Iterable[str]:
    """Runs of letters and digits as the index spells them: apostrophes gone; a possessive both ways."""
    for match in _word().finditer(text):
        word = match.group().replace("’", "'")
        if word.endswith("'s"):  # "levi's" is found by "levi" and by "levis", as shoppers type it
            yield word[:-2].replace("'", "")
        yield word.replace("'", "")


_ASCII_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """The terms of a text, in order (repeats kept): see the module's docstring."""
    if text.isascii():  # most product names: the same terms, found 5× faster (NFKC changes no ASCII)
        terms: list[str] = []
        for word in _ASCII_WORD.findall(text.lower()):
            if "'" in word:
                if word.endswith("'s"):
                    terms.append(word[:-2].replace("'", ""))
                word = word.replace("'", "")
            terms.append(word)
        return terms
    text = unicodedata.normalize("NFKC", text).casefold()
    terms = []
    for word in _words(text):
        start = 0
        for run in _UNSPACED.finditer(word):
            if run.start() > start:
                terms.append(word[start : run.start()])
            chars = run.group()
            terms.extend([chars] if len(chars) == 1 else [chars[i : i + 2] for i in range(len(chars) - 1)])
            start = run.end()
        if start < len(word):
            terms.append(word[start:])
    return terms


def item_terms(name: str, category: str, tags: Sequence[str]) -> list[str]:
    """The terms an item is found by: its name's, its category's and each tag's."""
    terms = tokenize(name)
    for text in (category, *tags):
        terms.extend(_label_terms(text))
    return terms


@functools.lru_cache(maxsize=65_536)
def _label_terms(text: str) -> tuple[str, ...]:
    """A category's or a tag's terms: the same few values recur on many items."""
    return tuple(tokenize(text))


@dataclass(frozen=True)
class Postings:
    """One body's terms: for term t, its rows ``rows[starts[t]:starts[t+1]]`` and their counts."""

    terms: dict[str, int]
    starts: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    counts: npt.NDArray[np.float32]
    lengths: npt.NDArray[np.float32]
    """Each row's number of terms (every row of the body, live or dead)."""

    @classmethod
    def of(cls, names: Sequence[str], categories: Sequence[str], tags: Sequence[Sequence[str]]) -> Postings:
        terms: dict[str, int] = {}
        term_ids: list[int] = []
        lengths = np.zeros(len(names), dtype=np.int64)
        for row, (name, category, its_tags) in enumerate(zip(names, categories, tags, strict=True)):
            found = item_terms(name or "", category or "", its_tags or ())
            lengths[row] = len(found)
            for term in found:
                t = terms.get(term)
                if t is None:
                    t = terms[term] = len(terms)
                term_ids.append(t)
        # One key per (term, row) occurrence: unique keys in order are the postings, term by term with
        # rows ascending, and their counts the term frequencies.
        owners = np.repeat(np.arange(len(names), dtype=np.int64), lengths)
        keys, counts = np.unique(
            np.asarray(term_ids, dtype=np.int64) * max(len(names), 1) + owners, return_counts=True
        )
        per_term = keys // max(len(names), 1)
        starts = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(per_term, minlength=len(terms)), out=starts[1:])
        return cls(
            terms=terms,
            starts=starts,
            rows=keys % max(len(names), 1),
            counts=counts.astype(np.float32),
            lengths=lengths.astype(np.float32),
        )

    def term(self, term: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The rows holding a term (live or dead) and how often each holds it."""
        t = self.terms.get(term)
        if t is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        start, end = int(self.starts[t]), int(self.starts[t + 1])
        return self.rows[start:end], self.counts[start:end]


def postings(segment: Segment) -> Postings:
    """The body's postings, made from its columns on first use and shared by all its views."""
    found: Postings | None = segment.lookups.get("keywords")
    if found is None:
        columns = segment.table.select(list(KEYWORD_FIELDS)).to_pydict()
        found = Postings.of(columns["name"], columns["category"], columns["tags"])
        segment.lookups["keywords"] = found
    return found


@dataclass(frozen=True)
class Statistics:
    """BM25's collection statistics over a snapshot's live rows."""

    rows: int
    mean_length: float

    def idf(self, df: int) -> float:
        return float(np.log1p((self.rows - df + 0.5) / (df + 0.5)))


def _cache(snapshot: Any) -> dict[Any, Any]:
    """What keyword searches derive from a snapshot once, in one entry of its cache (whose size
    limits the vector search plans it keeps)."""
    found: dict[Any, Any] = snapshot.cache.setdefault("keywords", {})
    return found


def _live(snapshot: Any) -> list[tuple[Segment, npt.NDArray[np.bool_] | None]]:
    """Each body of the snapshot with its live rows (None: every row of it)."""
    found: list[tuple[Segment, npt.NDArray[np.bool_] | None]] | None = _cache(snapshot).get("live")
    if found is None:
        found = []
        for views in snapshot.bodies().values():
            live = [view for view in views if view.live]
            if live:
                kept = snapshot.kept(live)
                found.append((live[0], None if kept is None else kept.mask))
        _cache(snapshot)["live"] = found
    return found


def statistics(snapshot: Any) -> Statistics:
    found: Statistics | None = _cache(snapshot).get("stats")
    if found is None:
        rows, total = 0, 0.0
        for body, alive in _live(snapshot):
            lengths = postings(body).lengths
            rows += len(lengths) if alive is None else int(alive.sum())
            total += float(lengths.sum() if alive is None else lengths[alive].sum())
        found = Statistics(rows, total / rows if rows else 0.0)
        _cache(snapshot)["stats"] = found
    return found


def frequency(snapshot: Any, term: str) -> int:
    """How many live rows of the snapshot hold the term."""
    cache = _cache(snapshot)
    key = ("df", term)
    found: int | None = cache.get(key)
    if found is None:
        found = 0
        for body, alive in _live(snapshot):
            rows, _ = postings(body).term(term)
            found += len(rows) if alive is None else int(alive[rows].sum())
        if len(cache) < 4096:  # a snapshot lives until the next write; its queries' terms are few
            cache[key] = found
    return found


def search(
    snapshot: Any, plan: Sequence[tuple[Segment, Kept | None]], text: str, k: int
) -> list[tuple[float, int, Segment]]:
    """The k best (BM25 score, row, body) of the plan's rows for a text's terms, best first.

    ``plan``: per body the rows a search may answer (``ReadIndex._plan``; None: every row of it).
    Ties go by body, then row, as vector hits do. A row holding none of the terms is no hit.
    """
    terms = list(dict.fromkeys(tokenize(text)))
    if not terms or not plan:
        return []
    stats = statistics(snapshot)
    if not stats.rows:
        return []
    weights = {term: stats.idf(frequency(snapshot, term)) for term in terms}
    found: list[tuple[float, int, int]] = []
    bodies = [body for body, _ in plan]
    for position, (body, keep) in enumerate(plan):
        index = postings(body)
        scores: npt.NDArray[np.float64] | None = None
        for term in terms:
            rows, counts = index.term(term)
            if keep is not None and len(rows):
                chosen = keep.mask[rows]
                rows, counts = rows[chosen], counts[chosen]
            if not len(rows):
                continue
            norm = K1 * (1 - B + B * index.lengths[rows] / stats.mean_length)
            weighted = (weights[term] * counts * (K1 + 1) / (counts + norm)).astype(np.float64)
            part = np.bincount(rows, weights=weighted, minlength=len(index.lengths)).astype(np.float64)
            scores = part if scores is None else scores + part
        if scores is None:
            continue
        rows = np.flatnonzero(scores)  # every term's weight is positive: a row holding one scores above 0
        if len(rows) > k:  # the rows at least as good as the k-th: ties at the edge go by row below
            rows = rows[scores[rows] >= -np.partition(-scores[rows], k - 1)[k - 1]]
        best = rows[np.lexsort((rows, -scores[rows]))][:k]
        found.extend((float(scores[row]), position, int(row)) for row in best.tolist())
    found.sort(key=lambda hit: (-hit[0], hit[1], hit[2]))
    return [(score, row, bodies[position]) for score, position, row in found[:k]]
