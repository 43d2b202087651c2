"""A real Milvus standalone on 127.0.0.1, from the PyPI package `milvus` (`milvus-server`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# Milvus 2.3 advertises these addresses; pinning them keeps its components talking over loopback.
_LOOPBACK = ("proxy", "rootCoord", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def server_command() -> str | None:
    """The `milvus-server` script beside this Python, or on PATH."""
    beside = Path(sys.executable).with_name("milvus-server")
    return str(beside) if beside.exists() else shutil.which("milvus-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MilvusServer:
    """Start, kill and restart one server process group on a fixed data folder and port."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        saved = data_dir / "proxy-port"
        self.port = port or (int(saved.read_text()) if saved.exists() else free_port())
        self.uri = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 480.0) -> None:  # generous: a loaded 2-core machine is slow
        """Start the server; a restart reuses the first start's configuration and ports.

        `milvus-server` picks free ports each time it starts, but the other components find
        the root coordinator through the address stored in etcd by the previous run; so a
        restart runs the extracted `milvus` binary on the written config instead.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "proxy-port").write_text(str(self.port))
        log = (self.data_dir / "server.log").open("ab")
        config = self.data_dir / "configs" / "milvus.yaml"
        binary = self.data_dir / "bin" / "milvus"
        if config.exists() and binary.exists():
            env = {
                **os.environ,
                "DEPLOY_MODE": "STANDALONE",
                "METRICS_PORT": str(free_port()),
                "MILVUS_RUN_DIR": str(self.data_dir / "run"),
                "LD_LIBRARY_PATH": f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
            }
            args = [str(binary), "run", "standalone"]
            cwd: Path | None = self.data_dir
        else:
            command = server_command()
            assert command is not None
            args = [command, "--data", str(self.data_dir), "--proxy-port", str(self.port)]
            for component in _LOOPBACK:
                args += ["--extra-config", f"{component}.ip=127.0.0.1"]
            env, cwd = dict(os.environ), None
        # Its own session: `milvus-server` is a wrapper whose child outlives a kill of the wrapper.
        self._process = subprocess.Popen(
            args, stdout=log, stderr=log, env=env, cwd=cwd, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"milvus-server exited early; see {self.data_dir / 'server.log'}")
            if self._answers():
                return
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"milvus-server did not answer within {timeout_s:.0f} s")

    def _answers(self) -> bool:
        from pymilvus import MilvusClient

        try:
            client = MilvusClient(uri=self.uri, timeout=3)
            client.list_collections()
            client.close()
            return True
        except Exception:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        self._end(signal.SIGKILL, 0.0)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after the grace period."""
        self._end(signal.SIGTERM, grace_s)

    def _end(self, first: signal.Signals, grace_s: float) -> None:
        if self._process is None:
            return
        group = self._process.pid
        deadline = time.monotonic() + grace_s
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, first)
            # The wrapper may exit while `milvus run standalone` lives on: watch the group.
            while time.monotonic() < deadline:
                os.killpg(group, 0)
                time.sleep(0.2)
            os.killpg(group, signal.SIGKILL)
            reaped = time.monotonic() + 30
            while time.monotonic() < reaped:  # until every member is gone (ports free again)
                self._process.poll()
                os.killpg(group, 0)
                time.sleep(0.1)
        self._process.wait(timeout=30)
        self._process = None
