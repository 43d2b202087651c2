"""Every command's --help prints its help strings as written: no markup eaten, no placeholders."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import click
import pytest
import typer
from typer.testing import CliRunner

from lookalike.cli import app

_SPACE = re.compile(r"\s+")


def commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and sub-command of the tree, with the words that reach it."""
    yield path, command
    # Typer's groups are not click.Group subclasses; they hold their commands the same way.
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from commands(sub, (*path, name))


ALL = list(commands(typer.main.get_command(app)))


def squeezed(text: str) -> str:
    # Wrapping may break a line at any space or after a hyphen ("xlm-roberta-" / "base"): compare
    # the characters as written, whitespace aside.
    return _SPACE.sub("", text)


def test_the_tree_is_walked() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"", "search", "policy", "policy add", "hashes", "partitions", "scan", "serve"} <= names
    assert len(names) > 25


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=lambda path: " ".join(path) or "lookalike")
def test_help_prints_every_help_string_literally(path: tuple[str, ...]) -> None:
    command = dict(ALL)[path]
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="lookalike", terminal_width=80)
    assert result.exit_code == 0, result.output
    shown = squeezed(result.output)
    expected = [inspect.cleandoc(command.help or "").partition("\f")[0]]
    expected += [param.help for param in command.params if getattr(param, "help", None)]
    for text in expected:
        assert squeezed(text) in shown, f"{' '.join(path)} --help does not print literally: {text!r}"
    assert "<bool>" not in result.output
    assert "\x1b[" not in result.output  # no terminal styling either


def test_markup_like_brackets_survive() -> None:
    out = CliRunner().invoke(app, ["policy", "add", "--help"], terminal_width=200).output
    assert "TOML label set: [labels.NAME] with prompts, threshold." in out
    assert re.search(r"--replace\s+Replace a policy", out)  # a flag takes no value: no placeholder


def test_index_help_names_every_catalog_column() -> None:
    from lookalike.ingest.catalog import CATALOG_COLUMNS

    shown = CliRunner().invoke(app, ["index", "--help"], terminal_width=100).stdout
    intro = squeezed(shown.split("Arguments:")[0])
    missing = [column for column in CATALOG_COLUMNS if not re.search(rf"\b{column}\b", intro)]
    assert not missing, f"index --help does not name the catalog columns {missing}"
    assert "category" in squeezed(shown.split("--sync")[1].split("--ray")[0])
