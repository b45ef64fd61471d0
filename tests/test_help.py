"""Every command's ``--help`` as a terminal shows it: docstrings re-wrapped to the width
(no line break from the source's hard wraps), every preset listed, type tags only where a
value follows, usage without ``{out}``, nothing cut short."""

from __future__ import annotations

import inspect
import re

import pytest
import typer.rich_utils
from typer.main import get_command
from typer.testing import CliRunner

from apexmer.cli.help import unwrap
from apexmer.cli.main import app
from apexmer.config import list_presets

ROOT = get_command(app)


def _commands(group=ROOT, path=()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands())
PATHS = [(), *[p for p, _ in COMMANDS]]


def render(path: tuple[str, ...], width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", width)
    monkeypatch.setenv("COLUMNS", str(width))
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def _lines(text: str) -> list[str]:
    """The text of each rendered line, box drawing removed, spaces collapsed."""
    return [" ".join(re.sub(r"[│╭╮╰╯─]", " ", line).split()) for line in text.splitlines()]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "apexmer")
def test_help_renders_cleanly(path, monkeypatch) -> None:
    narrow = render(path, 80, monkeypatch)
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert "<bool>" not in narrow and "list[" not in narrow
    assert "…" not in narrow  # nothing cut short (rich's ellipsis), e.g. --output-p…
    usage, *rest = [line for line in _lines(narrow) if line]
    assert usage.startswith("Usage: apexmer") and "{" not in usage  # not {out}
    assert not any("..." in line for line in rest)
    # Wide enough that rich wraps nothing: each docstring paragraph is one line.
    wide = _lines(render(path, 400, monkeypatch))
    command = dict(COMMANDS)[path] if path else ROOT
    for paragraph in (unwrap(command.help) or "").split("\n\n"):
        for line in paragraph.splitlines():
            assert line in wide, f"{line!r} is broken across lines"
    for name, sub in getattr(command, "commands", {}).items():  # the commands panel
        first = " ".join(inspect.cleandoc(sub.help or "").split("\n\n")[0].split())
        assert any(line == f"{name} {first}" for line in wide), name


def test_every_command_with_config_lists_every_preset(monkeypatch) -> None:
    with_config = [p for p, c in COMMANDS if any(o.name == "config" for o in c.params)]
    assert {p[-1] for p in with_config} >= {"train", "loso", "ablation"}
    for path in with_config:
        text = " ".join(_lines(render(path, 400, monkeypatch)))
        for preset in list_presets():
            assert re.search(rf"\b{preset} \(", text), (path, preset)


def test_no_command_defaults_to_hours_on_a_cpu_without_saying_so() -> None:
    configs = {
        path[-1]: option
        for path, command in COMMANDS
        for option in command.params
        if option.name == "config"
    }
    assert configs["train"].default == configs["loso"].default == "flow"
    config = configs["ablation"]
    assert config.default == "paper" and "IS the paper's experiment" in config.help
    assert "a GPU job" in config.help


def test_underscore_spellings_still_parse(tmp_path) -> None:
    # --input_path (the original demo's spelling) is accepted though only --input-path is
    # listed: the run reaches the checkpoint check, not a "no such option" error.
    args = ["predict", "--checkpoint", str(tmp_path / "none"), "--input_path", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--output_path", str(tmp_path / "o.csv")])
    assert "No such option" not in result.output and result.exit_code != 2, result.output


def test_unwrap_keeps_paragraphs_and_list_items() -> None:
    doc = """First line
        continues here.

        - item one
          goes on
        - item two"""
    assert unwrap(doc) == "First line continues here.\n\n- item one goes on\n- item two"
