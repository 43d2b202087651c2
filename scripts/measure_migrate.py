"""Row upserts vs bulk import: copy the same Milvus Lite collection into a fresh milvus-server both ways.

    python scripts/measure_migrate.py --items 100000

Needs the `milvus` package (pip install -e '.[dev]'); starts and stops its own server on loopback.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server.harness import MilvusServer  # noqa: E402

from lookalike.bench import _fill, clustered_vectors  # noqa: E402
from lookalike.store import open_store  # noqa: E402
from lookalike.store.backup import bulk_copy, copy_collection  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lookalike-migrate-"))
    server = MilvusServer(work / "server")
    server.start()
    try:
        lite = open_store(str(work / "lite.db"), "images")
        lite.create(args.dim, index="HNSW")
        _fill(lite, clustered_vectors(args.items, args.dim))
        paths = {
            "upsert": lambda target: copy_collection(lite, target),
            "bulk": lambda target: bulk_copy(lite, target, str(work / "bulk")),
        }
        for name, copy in paths.items():
            target = open_store(server.uri, f"migrated_{name}")
            started = time.perf_counter()
            copy(target)
            took = time.perf_counter() - started
            print(
                f"{name}: {args.items} items in {took:.1f} s = {args.items / took:.0f} items/s "
                f"(count {target.count()})"
            )
            target.close()
        lite.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
