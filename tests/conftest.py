from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.seeds import describe as describe_seed  # reads LOOKALIKE_TEST_SEED before it is cleared below

# No test may reach a model hub: fail fast instead of retrying the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Environment settings of the developer's shell must not leak into tests.
for key in list(os.environ):
    if key.startswith("LOOKALIKE_"):
        del os.environ[key]
# ONNX exports of the tiny model are shared by every test and CLI subprocess of the session.
os.environ["LOOKALIKE_CACHE_DIR"] = tempfile.mkdtemp(prefix="lookalike-test-cache-")
# A model's first use probes its runtimes in the process that needs it (the tests that check the
# background probe ask for it): no background process outlives a test.
os.environ["LOOKALIKE_PROBE"] = "now"
# Workflow databases of server collections (per user) go to a temporary folder too.
os.environ["LOOKALIKE_DATA_DIR"] = tempfile.mkdtemp(prefix="lookalike-test-data-")


def pytest_report_header() -> list[str]:
    line = describe_seed()
    return [line] if line else []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = describe_seed()  # again at the end, beside any failure it replays
    if line:
        terminalreporter.write_sep("-", line)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model-config JSON, checkpoint) of the tiny open_clip model, built once per session."""
    from tests.helpers import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
