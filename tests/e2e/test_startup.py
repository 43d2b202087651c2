"""Commands that run no model answer without importing one: checked in a fresh Python process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_images

pytestmark = pytest.mark.slow

HEAVY = ("torch", "open_clip", "onnxruntime", "timm", "torchvision")

# One process runs the commands in turn and reports, after each, its exit code and the heavy
# modules loaded so far: the first command that pulls one in is named.
PROBE = """
import json, sys
from lookalike.cli import app
heavy = {heavy!r}
report = []
for args in json.loads(sys.argv[1]):
    try:
        app(args, prog_name="lookalike")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    report.append([args, code, sorted(m for m in heavy if m in sys.modules)])
sys.stdout.write("\\nREPORT " + json.dumps(report) + "\\n")
"""


def test_commands_without_a_model_never_import_one(tmp_path: Path) -> None:
    db = str(tmp_path / "lookalike.db")
    write_images(tmp_path / "photos", 4)
    # Milvus Lite locks its file for the process that opened it: a helper process fills it.
    fill = (
        "import sys; from lookalike.config import load_settings; from lookalike.usecases import Context, ingest; "
        "from tests.helpers import FakeEmbedder; "
        "ctx = Context(load_settings(db=sys.argv[1], workers=1), embedder=FakeEmbedder(dim=32)); "
        "ingest.index(ctx, sys.argv[2], source='shop'); ctx.close()"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", fill, db, str(tmp_path / "photos")], cwd=root, check=True, timeout=300
    )
    exported = str(tmp_path / "backup.parquet")
    commands = [
        ["--help"],
        ["search", "--help"],
        ["search"],  # no query: an argument error
        ["search", "--text", "x", "--id", "1"],  # two queries
        ["search", "--text", "x", "--k", "0"],  # out of range
        ["search", "--text", "x", "--since", "yesterday"],
        ["search", "--text", "x", "--runtime", "tensorrt", "--offset", "-1"],
        ["index", str(tmp_path / "photos"), "--index-params", "not json"],
        ["stats"],
        ["stats", "--json"],
        ["partitions", "list"],
        ["export", exported],
        ["import", exported, "--collection", "restored"],
        ["migrate", "--to", str(tmp_path / "other.db")],
        ["show", "--item-id", "img_0001"],
    ]
    if "delete" in _command_names():
        commands.append(["delete", "--help"])
    env = {**os.environ, "LOOKALIKE_DB": db, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(commands)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "REPORT " in done.stdout, done.stderr
    report = json.loads(done.stdout.rsplit("REPORT ", 1)[1])
    for args, _code, loaded in report:
        assert loaded == [], f"`lookalike {' '.join(args)}` imported {loaded}"
    codes = {" ".join(args): code for args, code, _ in report}
    assert codes["stats"] == 0, done.stderr
    assert codes["export " + exported] == 0 and codes["--help"] == 0
    assert codes["search"] == 2 and codes["search --text x --k 0"] == 2
    assert codes["search --text x --since yesterday"] == 2 and "unexpected error" not in done.stderr
    assert codes[f"migrate --to {tmp_path / 'other.db'}"] == 0
    assert "Give exactly one of --text, --image, --id or --item-id" in done.stderr
    assert "exported 4 items" in done.stdout and "copied 4 items" in done.stdout


def _command_names() -> set[str]:
    from typer.main import get_command

    from lookalike.cli import app

    return set(get_command(app).commands)  # type: ignore[attr-defined]
