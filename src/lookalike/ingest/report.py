"""What an ingest did, whichever runner ran it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lookalike.ingest.sources import Skipped


@dataclass
class IngestReport:
    """What an ingest did: counts, every skipped input with its reason, and the time taken.

    The counts add up (sync.py says how ``replaced`` pairs new pictures with swept ones):
    every entry listed is new (``added`` + ``replaced`` = ``indexed``), was stored already
    (``updated`` + ``left`` = ``already_indexed``; an entry listed twice counts as left) or
    was skipped, so ``seen`` = ``indexed`` + ``already_indexed`` + ``len(skipped)``. With
    ``--sync``, the scope's stored pictures go from N to N + ``added`` - ``deleted``, and
    ``kept`` of them stayed only because a record of theirs could not be read this time.
    No count is ever negative.
    """

    seen: int = 0
    indexed: int = 0
    already_indexed: int = 0
    blocked: int = 0  # refused by a hash bank (a take-down's block list); counted among the skipped too
    flagged: int = 0  # flags raised for stored pictures by policies and hash banks (a refusal's: in blocked)
    crops: int = 0  # detected objects stored as their own items (--detect)
    updated: int = 0  # --sync: name or date changed, image the same (no re-embedding)
    replaced: int = 0  # --sync: a new image for a listed item, in place of an old one deleted
    deleted: int = 0  # --sync: stored pictures gone with nothing in their place (no longer listed)
    kept: int = 0  # --sync: stored pictures kept because their record could not be read this time
    skipped: list[Skipped] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # hash banks' floods noticed during the run
    elapsed_s: float = 0.0

    @property
    def added(self) -> int:
        return self.indexed - self.replaced

    @property
    def left(self) -> int:
        return self.already_indexed - self.updated

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.elapsed_s if self.elapsed_s > 0 else 0.0
