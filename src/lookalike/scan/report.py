"""Scan and duplicate reports as CSV, JSON or an HTML gallery; written to a temporary file, then renamed."""

from __future__ import annotations

import heapq
import html
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from lookalike import csvsafe, durable
from lookalike.errors import ConfigError
from lookalike.scan.duplicates import Group
from lookalike.scan.scan import ScanRow
from lookalike.scan.thumbs import img_tag
from lookalike.store import Item

FORMATS = (".csv", ".json", ".html")
HTML_MAX_PER_LABEL = 200

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666}.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{width:172px;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:6px;font-size:12px}
.card img,.missing{width:160px;height:160px;object-fit:contain;background:#f0f0f0;display:block}
.missing{display:flex;align-items:center;justify-content:center;color:#999}
.score{font-weight:600}.small{color:#777;word-break:break-all}
"""


def check_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"Report format '{suffix or path}' is not supported: use .csv, .json or .html.")
    return suffix


@contextmanager
def _atomic(path: Path) -> Iterator[IO[str]]:
    with durable.replacing_file(path, "w", newline="") as handle:
        yield handle


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _row_dict(row: ScanRow) -> dict[str, Any]:
    item = row.item
    data: dict[str, Any] = {
        "id": item.id,
        "item_id": item.item_id,
        "source": item.source,
        "created_at": item.created_at,
        "uri": item.uri,
        "label": row.label,
        "score": round(row.score, 6),
    }
    data.update({f"score_{name}": round(value, 6) for name, value in row.scores.items()})
    return data


def write_scan_report(
    path: str | Path, rows: Iterable[ScanRow], labels: list[str], meta: dict[str, Any]
) -> int:
    """Write the rows; CSV and JSON stream, HTML keeps the top rows per label. Returns the row count."""
    target = Path(path).expanduser()
    suffix = check_format(target)
    count = 0
    with _atomic(target) as handle:
        if suffix == ".csv":
            columns = ["id", "item_id", "source", "created_at", "uri", "label", "score"]
            writer = csvsafe.DictWriter(handle, columns + [f"score_{name}" for name in labels])
            writer.writeheader()
            for row in rows:
                writer.writerow(_row_dict(row))
                count += 1
        elif suffix == ".json":
            handle.write('{"labels": ' + json.dumps(labels, ensure_ascii=False))
            handle.write(', "scan": ' + json.dumps(meta, ensure_ascii=False) + ', "rows": [')
            for row in rows:
                handle.write(("," if count else "") + "\n" + json.dumps(_row_dict(row), ensure_ascii=False))
                count += 1
            handle.write("\n]}\n")
        else:
            count = _scan_html(handle, rows, labels, meta)
    return count


def _scan_html(handle: IO[str], rows: Iterable[ScanRow], labels: list[str], meta: dict[str, Any]) -> int:
    # A bounded heap per label keeps memory flat however many rows stream past.
    top: dict[str, list[tuple[float, int, ScanRow]]] = {name: [] for name in labels}
    totals = dict.fromkeys(labels, 0)
    count = 0
    for row in rows:
        count += 1
        totals[row.label] += 1
        heap = top[row.label]
        entry = (row.score, count, row)
        if len(heap) < HTML_MAX_PER_LABEL:
            heapq.heappush(heap, entry)
        else:
            heapq.heappushpop(heap, entry)
    title = "lookalike scan"
    handle.write(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>")
    handle.write(f"<style>{_STYLE}</style></head><body><h1>{title}</h1>")
    described = ", ".join(f"{k}: {html.escape(str(v))}" for k, v in meta.items() if v not in (None, [], ""))
    handle.write(f"<p class='meta'>{count} items reported. {described}</p>")
    for name in labels:
        shown = sorted(top[name], reverse=True)
        more = f" (showing the top {len(shown)})" if totals[name] > len(shown) else ""
        handle.write(f"<h2>{html.escape(name)}: {totals[name]} items{more}</h2><div class='grid'>")
        for score, _, row in shown:
            item = row.item
            handle.write(
                f"<div class='card'>{img_tag(item.uri, item.item_id)}"
                f"<div><span class='score'>{score:.3f}</span> {html.escape(item.item_id)}</div>"
                f"<div class='small'>{html.escape(item.source)} · {_day(item.created_at)}</div>"
                f"<div class='small'>id {item.id}</div></div>"
            )
        handle.write("</div>")
    handle.write("</body></html>\n")
    return count


def _member_dict(group: Group, index: int) -> dict[str, Any]:
    item = group.items[index]
    return {
        "id": item.id,
        "item_id": item.item_id,
        "source": item.source,
        "uri": item.uri,
        "score": round(group.scores[index], 6),
    }


def _crop_dict(item: Item) -> dict[str, Any]:
    return {"id": item.id, "item_id": item.item_id, "source": item.source, "uri": item.uri, "box": item.box}


def write_duplicates_report(path: str | Path, groups: list[Group], meta: dict[str, Any]) -> int:
    """Write duplicate groups; returns the number of groups."""
    target = Path(path).expanduser()
    suffix = check_format(target)
    with _atomic(target) as handle:
        if suffix == ".json":
            payload = {
                "duplicates": meta,
                "groups": [
                    {
                        "kind": g.kind,
                        "items": [_member_dict(g, i) for i in range(len(g.items))],
                        **({"crops": [_crop_dict(c) for c in g.crops]} if g.crops else {}),
                    }
                    for g in groups
                ],
            }
            json.dump(payload, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        elif suffix == ".csv":
            writer = csvsafe.DictWriter(
                handle, ["group", "kind", "id", "item_id", "source", "uri", "score", "box"]
            )
            writer.writeheader()
            for number, group in enumerate(groups, start=1):
                for i in range(len(group.items)):
                    writer.writerow({"group": number, "kind": group.kind, **_member_dict(group, i)})
                for crop in group.crops:  # a crop of one of the group's pictures
                    writer.writerow({"group": number, "kind": "crop of", **_crop_dict(crop)})
        else:
            handle.write(
                "<!doctype html><html><head><meta charset='utf-8'><title>lookalike duplicates</title>"
            )
            handle.write(f"<style>{_STYLE}</style></head><body><h1>lookalike duplicates</h1>")
            described = ", ".join(
                f"{k}: {html.escape(str(v))}" for k, v in meta.items() if v not in (None, [], "")
            )
            handle.write(f"<p class='meta'>{len(groups)} groups. {described}</p>")
            for number, group in enumerate(groups, start=1):
                sources = sorted({item.source for item in group.items})
                handle.write(
                    f"<h2>group {number}: {group.kind}, {len(group.items)} items, "
                    f"sources {html.escape(', '.join(sources))}</h2><div class='grid'>"
                )
                for i, item in enumerate(group.items):
                    handle.write(
                        f"<div class='card'>{img_tag(item.uri, item.item_id)}"
                        f"<div><span class='score'>{group.scores[i]:.3f}</span> {html.escape(item.item_id)}</div>"
                        f"<div class='small'>{html.escape(item.source)}</div><div class='small'>id {item.id}</div></div>"
                    )
                for crop in group.crops:
                    handle.write(
                        f"<div class='card'>{img_tag(crop.uri, crop.item_id)}"
                        f"<div>crop {html.escape(crop.box)}</div><div class='small'>id {crop.id}</div></div>"
                    )
                handle.write("</div>")
            handle.write("</body></html>\n")
    return len(groups)
