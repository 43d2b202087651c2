"""How the read index keeps its segments few: flat rows of new items gather per month, then move into
a graph shared by every month; a graph of recent rows joins the large one; merges keep each month to
a few segments (Lucene-style tiers). Pure functions of the shards: ``ReadIndex`` publishes what they
return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lookalike.store import segments as sizes
from lookalike.store.bodies import extend, merge
from lookalike.store.models import IndexType
from lookalike.store.segments import Segment

SEAL_ROWS = 5_000
"""New rows stay in flat (exact) segments until this many of them gather; then they join a graph."""
SEAL_SHARE = 16
"""At a flush, flat rows of new items join their month's graph once they number a sixteenth of it:
each joining copies the graph, so a row is copied at most 16 times over, while a search no longer
scores a month's tail of up to ``SEAL_ROWS`` rows one by one (a month closed in the middle of
an ingest kept its tail flat, and at 100K over twelve months the tails were half a query's time)."""
SEAL_LEAST = 256
GROW_WHOLE = 131_072
"""A graph of up to this many rows takes new rows into a copy of itself, however few: one graph to
walk instead of two (at 100K, a second graph of 5,000 recent rows cost as much per search as the
large one). A copy of it is about 460 MB of files at 512-d, written in about half a second, a tenth of
the time Milvus Lite takes to write the 5,000 rows that start one; past it, a copy of the large graph
waits for a sixteenth of its rows (``SEAL_SHARE``)."""
MAX_FLAT = 1
"""Flat segments of new rows per HNSW shard: a second one is concatenated with the first (a copy of
fewer than ``SEAL_ROWS`` rows), so a search scores at most one matrix per month beside the graphs."""


MAX_GRAPHS = 2
"""Graphs in a snapshot: the large one and one of recent rows (a third is folded into the large one)."""
MAX_SEGMENTS = 8
"""Segments per shard before the smallest are merged (each merge rebuilds only what it merges)."""
MERGE_FACTOR = 4


def joins(rows: int, graph: int) -> bool:
    """Whether ``rows`` new rows go into a copy of a graph of ``graph`` rows rather than a graph of
    their own: when they are a sixteenth of it, or it is small enough that copying it costs little
    (``GROW_WHOLE``)."""
    return rows * SEAL_SHARE >= graph or graph <= GROW_WHOLE


def graphs_of(shards: Mapping[str, tuple[Segment, ...]]) -> list[list[Segment]]:
    """Every view of each graph body, largest body first."""
    found: dict[str, list[Segment]] = {}
    for name in sorted(shards):
        for segment in shards[name]:
            if segment.is_graph:
                found.setdefault(segment.name, []).append(segment)
    return sorted(found.values(), key=lambda views: -len(views[0]))


def swap(
    shards: Mapping[str, tuple[Segment, ...]], old: Sequence[Segment], new: Mapping[str, Segment]
) -> dict[str, tuple[Segment, ...]]:
    """Shards with the views ``old`` replaced by ``new`` (one per shard; those with no live row left out)."""
    gone = {id(view) for view in old}
    out = {name: tuple(s for s in segments if id(s) not in gone) for name, segments in shards.items()}
    for shard, view in new.items():
        if view.live:
            out[shard] = (*out.get(shard, ()), view)
    return out


def ordered(segments: Sequence[Segment]) -> tuple[Segment, ...]:
    """A shard's segments: graphs first, the largest first, then flat ones."""
    return tuple(sorted(segments, key=lambda s: (not s.is_graph, -len(s) if s.is_graph else 0)))


@dataclass(frozen=True)
class Tiers:
    """The policy for one index: its type, build parameters and the recall its graphs are measured for."""

    index_type: IndexType
    params: dict[str, Any]
    recall: float

    def tiered(
        self, shards: Mapping[str, tuple[Segment, ...]], seal_at: int | None = None
    ) -> dict[str, tuple[Segment, ...]]:
        """Keep the index to a few segments.

        HNSW: at most one flat segment of new rows per month; once the months' flat rows reach
        ``seal_at`` (``SEAL_ROWS`` on a write, fewer at a flush: see ``seal``) they move into a graph
        shared by every month (``fold``), and a graph of recent rows joins the large one once it is a
        sixteenth of it (``settle``). FLAT, and any shard still over ``MAX_SEGMENTS``: the smallest
        segments of a month merge (Lucene-style tiers).
        """
        shards = dict(shards)
        for name, segments in shards.items():
            flat = [s for s in segments if not s.is_graph and s.live]
            if self.index_type == IndexType.HNSW and len(flat) > MAX_FLAT:
                merged = merge(flat, IndexType.FLAT, self.params)
                segments = (*(s for s in segments if s.is_graph), *merged.values())
            while len(segments) > MAX_SEGMENTS:
                by_size = sorted(segments, key=lambda s: s.live)
                small, rest = by_size[:MERGE_FACTOR], by_size[MERGE_FACTOR:]
                live = [s for s in small if s.live]
                segments = (*rest, *(merge(live, IndexType.FLAT, self.params).values() if live else ()))
            shards[name] = segments
        if self.index_type == IndexType.HNSW:
            shards = self.settle(self.fold(shards, SEAL_ROWS if seal_at is None else seal_at))
        return {name: ordered(segments) for name, segments in shards.items()}

    def fold(self, shards: dict[str, tuple[Segment, ...]], least: int) -> dict[str, tuple[Segment, ...]]:
        """Move the months' flat rows into a graph once there are ``least`` of them: into the graph of
        recent rows if there is one, else into the large graph if they are a sixteenth of it (each
        row is then copied at most 16 times over), else into a new graph of their own."""
        flats = [s for segs in shards.values() for s in segs if not s.is_graph and s.live]
        rows = sum(s.live for s in flats)
        if not flats or rows < least:
            return shards
        graphs = graphs_of(shards)
        if not graphs or (len(graphs) == 1 and not joins(rows, len(graphs[0][0]))):
            if rows < sizes.GRAPH_FROM:
                return shards  # too few for a graph of their own, and copying the large one is not worth it
            return swap(shards, flats, merge(flats, IndexType.HNSW, self.params, self.recall))
        target = graphs[-1]  # the graph of recent rows, else the only one
        return swap(shards, [*target, *flats], self.grow(target, flats))

    def settle(self, shards: dict[str, tuple[Segment, ...]]) -> dict[str, tuple[Segment, ...]]:
        """Fold the smallest graph into the large one once it is a sixteenth of it, or when there are
        more than ``MAX_GRAPHS`` (a month rebuilt on its own)."""
        while True:
            graphs = graphs_of(shards)
            if len(graphs) < 2:
                return shards
            large, small = graphs[0], graphs[-1]
            if not joins(sum(s.live for s in small), len(large[0])) and len(graphs) <= MAX_GRAPHS:
                return shards
            shards = swap(shards, [*large, *small], self.grow(large, small))

    def grow(self, views: list[Segment], others: list[Segment]) -> dict[str, Segment]:
        """The graph of ``views`` with the live rows of ``others`` added: into a copy of it, or a new
        graph of the live rows of both when a quarter of it is dead."""
        dead = len(views[0]) - sum(view.live for view in views)
        if dead * 4 <= len(views[0]):
            return extend(views, others, self.recall)
        return merge([*views, *others], IndexType.HNSW, self.params, self.recall)
