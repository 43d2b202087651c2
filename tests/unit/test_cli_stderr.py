"""gRPC's core log lines never reach a command's stderr; everything else does, up to the last byte."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, sys
from lookalike.cli.common import err, setup_logging
setup_logging(False)
os.write(2, b"I1201 22:07:12.42 11142 chttp2_transport.cc:1403] Got goaway [11] err=UNAVAILABLE: too_many_pings\\n")
os.write(2, b"E1201 22:07:12.42 11142 chttp2_transport.cc:1435] Received a GOAWAY with error code ENHANCE_YOUR_CALM\\n")
err.print("error: the collection 'images' does not exist")
sys.stderr.write("last words without a newline")
sys.exit(4)
"""


def test_grpc_goaway_lines_are_dropped_and_the_rest_kept() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 4
    assert "GOAWAY" not in done.stderr and "chttp2" not in done.stderr and "too_many_pings" not in done.stderr
    assert "error: the collection 'images' does not exist" in done.stderr
    assert done.stderr.endswith("last words without a newline")


def test_the_stores_recovery_is_one_line_on_stderr_without_verbose(tmp_path: object) -> None:
    """A damaged read-index file is rebuilt from Milvus; a user of the command line is told so in one
    line (the root logger stays at CRITICAL for libraries), with no traceback."""
    import os
    from pathlib import Path

    from lookalike.store import LiteStore
    from tests.store_model import DIM, make_item

    db = Path(str(tmp_path)) / "shop.db"
    store = LiteStore(str(db), "images")
    store.create(DIM, index="HNSW")
    store.insert([make_item(i) for i in range(1, 11)])
    store.close()
    for vectors in (db / "lookalike-index" / "images").glob("*.npy"):
        vectors.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    done = subprocess.run(
        [sys.executable, "-m", "lookalike", "stats", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    # In a pipe the summary lines go to stderr too; the recovery is one note among them.
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "rebuilt" in notes[0], done.stderr
    assert "Traceback" not in done.stderr and "10 items" in done.stderr
