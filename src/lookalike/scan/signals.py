"""PDQ hash lists in the formats python-threatexchange (Meta's ``tx``) reads and writes.

- ``tx``: a signal file, one signal a line, ``pdq <64 hex digits>`` (what ``tx hash photo``
  prints and the local-file exchange, ``LocalFileSignalExchangeAPI``, reads and appends to). A
  bare hash, optionally followed by labels (lookalike's own ``match-hashes`` lists), is read too.
- ``csv``: ``tx dataset --print-signals --csv``: ``signal_type,signal_str,collab,category,tags``
  (tags separated by spaces); how every exchange tx fetches from (ThreatExchange, NCMEC, StopNCII)
  leaves a dataset.
- ``te``: the CLI's simple state files (``simple.<TYPE>.te``: ``indicator,first_descriptor_id,
  added_on,labels``; HMA's variant has the indicator's id second).

Reading is strict where it matters: a PDQ line that is not 64 hex digits refuses the whole file
(naming the line), so that nothing is half-imported; signals of other types (md5, raw_text, ...)
are counted and left out.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from lookalike import csvsafe, durable
from lookalike.errors import ConfigError

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
PDQ_TYPES = {"pdq", "hash_pdq"}  # tx's signal type name; the ThreatExchange indicator type (HASH_PDQ)
CSV_FIELDS = ("signal_type", "signal_str", "collab", "category", "tags")
POSITIVE, NEGATIVE = "POSITIVE_CLASS", "NEGATIVE_CLASS"
MAX_BYTES = 2_000_000_000  # a hash list over 2 GB is no hash list


class SignalFormat(StrEnum):
    TX = "tx"
    CSV = "csv"
    TE = "te"


@dataclass(frozen=True)
class Signal:
    pdq: str
    labels: tuple[str, ...] = ()
    category: str = ""  # csv: the dataset's opinion (POSITIVE_CLASS, NEGATIVE_CLASS, ...)
    line: int = 0


@dataclass
class Parsed:
    signals: list[Signal] = field(default_factory=list)
    other_types: Counter[str] = field(default_factory=Counter)  # signals of other types, left out


def format_of(path: str | Path, given: str | None = None) -> SignalFormat:
    if given:
        try:
            return SignalFormat(given.lower())
        except ValueError:
            raise ConfigError(f"--format is tx, csv or te, not {given!r}.") from None
    suffix = Path(path).suffix.lower()
    return {".csv": SignalFormat.CSV, ".te": SignalFormat.TE}.get(suffix, SignalFormat.TX)


def read_signals(path: str | Path, fmt: str | None = None) -> Parsed:
    """The PDQ signals of a file in one of the formats; raises ConfigError naming the bad line."""
    parsed = Parsed()
    for signal in iter_signals(path, fmt, parsed.other_types):
        parsed.signals.append(signal)
    return parsed


def iter_signals(
    path: str | Path, fmt: str | None = None, other_types: Counter[str] | None = None
) -> Iterator[Signal]:
    """The PDQ signals of a file, one at a time (a list of millions is read, not held), counting
    the signals of other types into ``other_types``; raises ConfigError at a bad line."""
    file = Path(path).expanduser()
    chosen = format_of(file, fmt)
    others: Counter[str] = other_types if other_types is not None else Counter()
    found = 0
    try:
        if file.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{file} is over 2 GB: not a hash list.")
        with file.open(encoding="utf-8-sig", newline="") as handle:
            reader = {SignalFormat.TX: _tx, SignalFormat.CSV: _csv, SignalFormat.TE: _te}[chosen]
            for signal in reader(handle, file.name, others):
                found += 1
                yield signal
    except FileNotFoundError as exc:
        raise ConfigError(f"Hash file not found: {file}") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"Cannot read the hash file {file}: {exc}") from exc
    if not found and not others:
        raise ConfigError(f"{file.name} holds no signals (read as {chosen}).")


def _hash(value: str, name: str, line: int) -> str:
    value = value.strip()
    if not _HEX.match(value):
        raise ConfigError(f"{name}, line {line}: {value[:80]!r} is not a PDQ hash (64 hex digits).")
    return value.lower()


def _tx(lines: Iterable[str], name: str, others: Counter[str]) -> Iterator[Signal]:
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        first, _, rest = line.partition(" ")
        if _HEX.match(first):  # a bare hash, labels after it
            yield Signal(first.lower(), tuple(rest.replace(",", " ").split()), line=number)
        elif first.lower() in PDQ_TYPES:
            yield Signal(_hash(rest, name, number), line=number)
        elif re.fullmatch(r"[a-z0-9_]{1,40}", first) and rest.strip():
            others[first] += 1
        else:
            raise ConfigError(f"{name}, line {number}: {line[:80]!r} is neither 'pdq HASH' nor a PDQ hash.")


def _csv(lines: Iterable[str], name: str, others: Counter[str]) -> Iterator[Signal]:
    reader = csv.DictReader(lines)
    missing = [f for f in ("signal_type", "signal_str") if f not in (reader.fieldnames or ())]
    if missing:
        raise ConfigError(
            f"{name}: a tx dataset CSV has the columns {', '.join(CSV_FIELDS)}; {', '.join(missing)} missing."
        )
    for row in reader:
        number = reader.line_num
        kind = (row.get("signal_type") or "").strip().lower()
        if kind not in PDQ_TYPES:
            others[kind or "(empty)"] += 1
            continue
        tags = tuple((row.get("tags") or "").split())
        category = (row.get("category") or "").strip().upper()
        yield Signal(_hash(row.get("signal_str") or "", name, number), tags, category, number)


def _te(lines: Iterable[str], name: str, others: Counter[str]) -> Iterator[Signal]:
    reader = csv.reader(lines)
    for row in reader:
        number = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) not in (4, 5):
            raise ConfigError(f"{name}, line {number}: a .te row has 4 or 5 columns, this one {len(row)}.")
        yield Signal(_hash(row[0], name, number), tuple(row[-1].split()), line=number)


@dataclass(frozen=True)
class Exported:
    pdq: str
    labels: Sequence[str]
    entry: int
    added_on: str  # YYYY-MM-DD


def write_signals(
    path: str | Path, fmt: SignalFormat, rows: Iterable[Exported], *, collab: str, negative: bool
) -> int:
    """Write the rows in one of the formats (durably); returns how many."""
    written = 0
    category = NEGATIVE if negative else POSITIVE
    try:
        with durable.replacing_file(Path(path).expanduser(), "w", newline="") as handle:
            if fmt is SignalFormat.TX:
                for row in rows:
                    handle.write(f"pdq {row.pdq}\n")
                    written += 1
            elif fmt is SignalFormat.CSV:
                writer = csvsafe.DictWriter(handle, CSV_FIELDS)
                writer.writeheader()
                for row in rows:
                    writer.writerow(
                        {
                            "signal_type": "pdq",
                            "signal_str": row.pdq,
                            "collab": collab,
                            "category": category,
                            "tags": " ".join(row.labels),
                        }
                    )
                    written += 1
            else:
                plain = csvsafe.Writer(handle)
                for row in rows:
                    plain.writerow([row.pdq, row.entry, row.added_on, " ".join(row.labels)])
                    written += 1
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}") from exc
    return written
