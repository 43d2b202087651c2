"""Running the `lookalike` command in tests: in-process with Typer's CliRunner, or as a real process.

In-process is the default: the same parsing, context, model loading and printing, without paying
the interpreter and torch import of a new process. A real process is kept where it is the point
(the installed entry point, exit codes of a fresh interpreter, what a new process imports).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner


@dataclass(frozen=True)
class Ran:
    """What a run left: the same three fields a CompletedProcess has."""

    returncode: int
    stdout: str
    stderr: str


def lookalike(env: dict[str, str], *args: str, cwd: Path | None = None) -> Ran:
    """Run ``lookalike ARGS`` in this process, with exactly ``env`` as its environment."""
    from lookalike.cli import app

    overrides: dict[str, str | None] = {key: None for key in os.environ if key not in env}
    overrides.update(env)
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner().invoke(app, list(args), env=overrides, prog_name="lookalike")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug in the command itself: show its traceback
    return Ran(result.exit_code, result.stdout, result.stderr)


def lookalike_process(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``lookalike ARGS`` as a new process, the way a user's shell does."""
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
