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
