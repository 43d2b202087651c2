"""Hash banks: PDQ hashes of files, banks kept and exchanged, lookups, and the screen at ingest.

Banks live in the collection's workflow database (workflow/banks.py); their hashes are matched
in memory by the one matcher of the process (workflow/matcher.py). At ingest every new whole
picture passes the screen (screening.py) before it is embedded or stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ConfigError, ImageError
from lookalike.usecases.context import Context
from lookalike.workflow.banks import (
    MIN_QUALITY,
    TAKEDOWNS,
    Bank,
    BankAction,
    BankKind,
    Entry,
    NewEntry,
    check_labels,
)
from lookalike.workflow.matches import Alert

if TYPE_CHECKING:
    from lookalike.workflow.matcher import Verdict

__all__ = ["TAKEDOWNS", "BankAction", "BankKind"]


@dataclass(frozen=True)
class Hashed:
    """A file's PDQ hash and quality, or why it could not be hashed."""

    uri: str
    pdq: str = ""
    quality: int = 0
    error: str = ""


def hash_bytes(ctx: Context, data: bytes) -> tuple[str, int]:
    """The PDQ hash (reference bit order, as pdqhash and threatexchange write it) and quality of an image.

    The whole picture is decoded at full size, upright (EXIF orientation applied), so the hash is
    the one other PDQ tools compute for the same pixels.
    """
    from lookalike.ingest import decode_image
    from lookalike.ingest.phash import pdq

    return pdq(decode_image(data, max_pixels=ctx.settings.max_image_pixels).image)


def hash_files(ctx: Context, uris: Sequence[str]) -> list[Hashed]:
    """The PDQ hash of each file or URL (under the fetch policy); an unreadable one carries its reason."""
    found = []
    for uri in uris:
        try:
            value, quality = hash_bytes(ctx, ctx.fetch(uri))
        except ImageError as exc:
            found.append(Hashed(uri, error=str(exc)))
            continue
        found.append(Hashed(uri, value, quality))
    return found


# managing banks


def create(
    ctx: Context,
    name: str,
    *,
    kind: str = "block",
    action: str | None = None,
    max_distance: int = 31,
    labels: Sequence[str] = (),
    by: str,
) -> Bank:
    chosen_kind = _kind(kind)
    default = BankAction.REFUSE if name == TAKEDOWNS else BankAction.FLAG  # the block list refuses
    chosen = _action(action) if action is not None else default
    if chosen_kind is BankKind.ALLOW and chosen is BankAction.REFUSE:
        raise ConfigError("An allow bank suppresses matches; it cannot refuse uploads (--action).")
    return ctx.workflow.banks.create(
        name, kind=chosen_kind, action=chosen, max_distance=max_distance, labels=labels, by=_who(by)
    )


def _kind(text: str) -> BankKind:
    try:
        return BankKind(text)
    except ValueError:
        raise ConfigError(f"--kind is block or allow, not {text!r}.") from None


def _action(text: str) -> BankAction:
    try:
        return BankAction(text)
    except ValueError:
        raise ConfigError(f"--action is flag or refuse, not {text!r}.") from None


def _who(by: str) -> str:
    if not by.strip():
        raise ConfigError("A change to a bank needs the name of who makes it (--by NAME).")
    return by


@dataclass(frozen=True)
class Listed:
    bank: Bank
    entries: int
    paused: int


def listed(ctx: Context) -> list[Listed]:
    banks = ctx.workflow.banks
    sizes = banks.sizes()
    return [Listed(b, *sizes.get(b.name, (0, 0))) for b in banks.banks()]


def switch(ctx: Context, name: str, *, enabled: bool, by: str, note: str = "") -> Bank:
    return ctx.workflow.banks.update(name, enabled=enabled, by=_who(by), note=note)


def configure(
    ctx: Context,
    name: str,
    *,
    by: str,
    max_distance: int | None = None,
    action: str | None = None,
    labels: Sequence[str] | None = None,
    note: str = "",
) -> Bank:
    if max_distance is None and action is None and labels is None:
        raise ConfigError("Say what to change: --max-distance, --action or --label.")
    return ctx.workflow.banks.update(
        name,
        by=_who(by),
        max_distance=max_distance,
        action=_action(action) if action is not None else None,
        labels=labels,
        note=note,
    )


@dataclass
class Added:
    added: int = 0
    already: int = 0
    skipped: list[Hashed] = field(default_factory=list)  # files that could not be hashed
    low_quality: list[Hashed] = field(default_factory=list)  # hashed, but below PDQ's quality 50: left out


def add(
    ctx: Context,
    name: str,
    values: Sequence[str],
    *,
    labels: Sequence[str] = (),
    note: str = "",
    by: str,
) -> Added:
    """Put hashes in a bank: each value a PDQ hash (64 hex digits) or an image file or URL to hash."""
    from lookalike.scan.signals import _HEX

    banks = ctx.workflow.banks
    banks.bank(name)  # an unknown bank is refused before any file is read
    labels = check_labels(labels)
    result = Added()
    entries = []
    for value in values:
        if _HEX.match(value.strip()):
            entries.append(NewEntry(value.strip().lower(), labels=labels, note=note))
            continue
        hashed = hash_files(ctx, [value])[0]
        if hashed.error:
            result.skipped.append(hashed)
        elif hashed.quality < MIN_QUALITY:
            result.low_quality.append(hashed)
        else:
            entries.append(NewEntry(hashed.pdq, labels=labels, note=note or f"hashed from {value}"))
    if entries:
        result.added, result.already = banks.add(name, entries, by=_who(by))
    return result


def remove(ctx: Context, name: str, targets: Sequence[str], *, by: str, note: str = "") -> list[Entry]:
    """Take entries out of a bank (by entry id, PDQ hash or SHA-256); lifting a take-down's block is
    removing its entry from ``takedowns``. Every removal is an audit record."""
    if not targets:
        raise ConfigError("Say which entries to remove: entry ids, PDQ hashes or SHA-256 digests.")
    return ctx.workflow.banks.remove(name, targets, by=_who(by), note=note)


IMPORT_BATCH = 50_000


@dataclass(frozen=True)
class Imported:
    added: int
    already: int
    other_types: dict[str, int]  # signals of other types in the file, left out
    contrary: int  # csv rows whose category contradicts the bank's kind, left out


def import_(ctx: Context, name: str, path: str, *, fmt: str | None = None, by: str) -> Imported:
    """Import a threatexchange hash file (tx signal file, tx dataset CSV, .te) into a bank.

    The file is read twice, a line at a time: first checked whole (a bad line refuses it with
    nothing imported), then imported in batches, each one transaction (a run cut short is finished
    by running it again: hashes there already are counted, not added twice). Rows of a dataset
    CSV marked NEGATIVE_CLASS (false positives) are left out of a block bank, and POSITIVE_CLASS
    ones out of an allow bank.
    """
    from collections import Counter

    from lookalike.scan.signals import NEGATIVE, POSITIVE, iter_signals

    banks = ctx.workflow.banks
    bank = banks.bank(name)
    who = _who(by)
    contrary = NEGATIVE if bank.kind is BankKind.BLOCK else POSITIVE
    others: Counter[str] = Counter()
    skipped = 0
    for signal in iter_signals(path, fmt, others):  # the check: nothing written yet
        try:
            check_labels(signal.labels)
        except ConfigError as exc:
            raise ConfigError(f"{Path(path).name}, line {signal.line}: {exc}") from None
        skipped += signal.category == contrary
    added = already = 0
    batch: list[NewEntry] = []
    for signal in iter_signals(path, fmt):
        if signal.category != contrary:
            batch.append(NewEntry(signal.pdq, labels=signal.labels))
        if len(batch) >= IMPORT_BATCH:
            done = banks.add(name, batch, by=who, action="import")
            added, already, batch = added + done[0], already + done[1], []
    if batch:
        done = banks.add(name, batch, by=who, action="import")
        added, already = added + done[0], already + done[1]
    return Imported(added, already, dict(others), skipped)


def export(ctx: Context, name: str, path: str, *, fmt: str | None = None) -> int:
    """Write a bank's PDQ hashes in a threatexchange format; entries with only a SHA-256 are left out."""
    from lookalike.scan.signals import Exported, format_of, write_signals

    banks = ctx.workflow.banks
    bank = banks.bank(name)
    chosen = format_of(path, fmt)
    rows = (
        Exported(e.pdq, e.labels or bank.labels, e.id, time.strftime("%Y-%m-%d", time.gmtime(e.added_at)))
        for batch in banks.entries(name)
        for e in batch
        if e.pdq
    )
    return write_signals(path, chosen, rows, collab=name, negative=bank.kind is BankKind.ALLOW)


def entries(ctx: Context, name: str, *, limit: int = 100, offset: int = 0) -> tuple[int, list[Entry]]:
    banks = ctx.workflow.banks
    total = banks.sizes().get(banks.bank(name).name, (0, 0))[0]
    shown: list[Entry] = []
    seen = 0
    for batch in banks.entries(name, batch=max(limit, 1000)):
        for entry in batch:
            if seen >= offset and len(shown) < limit:
                shown.append(entry)
            seen += 1
        if len(shown) >= limit:
            break
    return total, shown


def alerts(ctx: Context, *, open_only: bool = False) -> list[Alert]:
    return ctx.workflow.banks.matches.alerts(open_only=open_only)


def resume(ctx: Context, name: str, entry: int, *, by: str, note: str = "") -> Entry:
    return ctx.workflow.banks.matches.resume(name, entry, by=_who(by), note=note)


# lookups


def lookup(ctx: Context, hashes: Sequence[str], *, banks: Sequence[str] | None = None) -> list[Verdict]:
    """What each PDQ hash matches in the enabled banks (``banks``: only these), each bank at its distance."""
    from lookalike.scan.hashes import to_bits
    from lookalike.workflow.banks import pdq_bytes

    hashes = [h.lower() for h in hashes]
    for value in hashes:
        pdq_bytes(value)  # a bad hash is refused with its reason
    known = {b.name for b in ctx.workflow.banks.banks()}
    unknown = sorted(set(banks or ()) - known)
    if unknown:
        raise ConfigError(
            f"No bank named {', '.join(map(repr, unknown))} (banks: {', '.join(sorted(known)) or 'none'})."
        )
    snapshot = ctx.workflow.banks.matcher.snapshot()
    return snapshot.lookup(to_bits([h.lower() for h in hashes]), only=set(banks) if banks else None)


def warm(ctx: Context) -> None:
    """Build the banks' index now, if the collection has banks with entries (a server's start)."""
    import logging

    try:
        if Path(ctx.settings.workflow_path()).exists() and any(b.entries for b in listed(ctx)):
            ctx.workflow.banks.matcher.snapshot()
    except Exception:  # the server runs on; the first lookup builds it, or says why it cannot
        logging.getLogger(__name__).warning("building the hash banks' index failed", exc_info=True)
