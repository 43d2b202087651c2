"""Measure ingest throughput and search latency on generated images (a stop-gap until `lookalike bench`).

python scripts/measure.py --images 1000 --model ViT-B-32 --pretrained random
python scripts/measure.py --images 1000 --tiny
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import build_tiny_model, make_image  # noqa: E402

from lookalike.config import load_settings  # noqa: E402
from lookalike.usecases import Context, Query, ingest  # noqa: E402
from lookalike.usecases import search as searching


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, nargs=2, default=(800, 600), metavar=("W", "H"))
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--tiny", action="store_true", help="use the tests' tiny open_clip model")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lookalike-measure-"))
    if args.tiny:
        config, checkpoint = build_tiny_model(work / "model")
        args.model, args.pretrained = str(config), str(checkpoint)
    photos = work / "photos"
    photos.mkdir()
    for i in range(args.images):
        make_image(i, size=tuple(args.size)).save(photos / f"{i:05d}.jpg", quality=90)
    service = Context(load_settings(db=str(work / "bench.db"), model=args.model, pretrained=args.pretrained))
    service.embedder.load()
    report = ingest.index(service, str(photos))
    print(
        f"model {service.embedder.name}: indexed {report.indexed} images of {args.size[0]}x{args.size[1]} "
        f"in {report.elapsed_s:.1f} s = {report.images_per_s:.1f} images/s (decode + embed + insert)"
    )
    words = ["floral top", "red dress", "blue shoe", "striped bag", "萨摩耶"]
    for kind, make_query in (
        ("text", lambda i: Query(text=words[i % len(words)], k=10)),
        ("image", lambda i: Query(image=str(photos / f"{i % args.images:05d}.jpg"), k=10)),
        ("id", None),
    ):
        times = []
        ids = [h.item.id for h in searching.search(service, Query(text="x", k=args.queries)).hits]
        for i in range(args.queries):
            query = make_query(i) if make_query else Query(id=ids[i % len(ids)], k=10)
            started = time.perf_counter()
            searching.search(service, query)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(
            f"{kind:5s} search over {report.indexed}: p50 {statistics.median(times):.1f} ms, "
            f"p95 {times[int(len(times) * 0.95) - 1]:.1f} ms ({args.queries} queries, k=10)"
        )


if __name__ == "__main__":
    main()
