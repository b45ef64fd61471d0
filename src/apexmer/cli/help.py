"""How ``--help`` reads: one command class for every command, so that help is written once
(docstrings, option help) and renders cleanly at any terminal width.

- Docstrings are hard-wrapped at 100 columns in the source; ``unwrap`` joins each
  paragraph's lines (list items stay one per line), so rich re-wraps them to the terminal
  and no line breaks mid-sentence.
- Type tags: ``<path>``, ``<int>``, ``<float>``, ``<str>`` where a value follows; none on
  flags and no ``list[...]`` (a repeatable option says so in its help).
- Usage names arguments ``OUT``, ``[PATH]...`` (not ``{out}``).
- ``ALIASES``: underscore spellings (``--input_path``, kept from the original CapsuleNet
  demo) are accepted but not listed, so the option column stays narrow.
- ``config_help``: the ``--config`` help lists every preset with its cost.
"""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import PurePath
from typing import Any, get_args, get_origin

from typer.core import TyperCommand, TyperGroup

from apexmer.config import list_presets

# What each preset is and what it costs on a CPU (figures: bench/README.md).
PRESET_NOTES = {
    "flow": "onset->apex flow into two SSSNets per fold, the recipe for real data: ~12 min "
    "for the MEGC 2019 composite on 2 cores",
    "demo": "flow made short, for the synthetic demo",
    "ststnet": "STSTNet as published, 500 epochs: about 2 h on one core for the composite",
    "off_apexnet": "OFF-ApexNet as published, 3000 epochs: a GPU job, 26 h on one core",
    "paper": "the paper's SE-ResNeXt-50 on 224 px apex frames: a GPU job, about 67 h of "
    "CPU for CASME II",
}

# Spellings accepted on the command line but not shown in help: alias -> option.
ALIASES = {
    "--input_path": "--input-path",
    "--output_path": "--output-path",
    "--save_aligned": "--save-aligned",
}

_CLICK_TYPES = {"integer": "int", "text": "str", "boolean": "bool"}


def config_help(note: str = "") -> str:
    """``--config`` help: every preset (``configs/*.yaml``) with its note, then YAML, then
    ``note`` (why the default is what it is, where that needs saying)."""
    known = [n for n in PRESET_NOTES if n in list_presets()]
    names = known + [n for n in list_presets() if n not in PRESET_NOTES]
    presets = [f"{n} ({PRESET_NOTES[n]})" if n in PRESET_NOTES else n for n in names]
    return f"preset: {'; '.join(presets)}; or a YAML file" + (f". {note}" if note else "")


def unwrap(text: str | None) -> str | None:
    """A docstring with each paragraph's hard wraps joined: lines of a paragraph become one
    line; a paragraph of ``- `` items keeps one line per item; a paragraph starting with
    ``\\b`` (click's "keep as is") is kept."""
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph)
            continue
        items: list[str] = []
        for line in paragraph.splitlines():
            line = line.strip()
            if line.startswith("- ") or not items:
                items.append(line)
            else:
                items[-1] += " " + line
        paragraphs.append("\n".join(items))
    return "\n\n".join(paragraphs)


def _kind(param: Any) -> str:
    """A parameter's value type as a short name: path, int, float, str, bool, or the
    choices ``a|b``; typer >= 0.2x describes it with ``type_descriptor``, click before."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        if getattr(param.type, "choices", None):  # click.Choice
            return "|".join(map(str, param.type.choices))
        return _CLICK_TYPES.get(param.type.name, param.type.name)
    annotation = desc.annotation
    if get_origin(annotation) is list:  # a repeatable option: its element's type
        (annotation,) = get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "|".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", "str")


def _tag(param: Any) -> str:
    """The type column: ``<path>``, ``<int>``...; nothing for a flag."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    kind = _kind(param)
    return "" if kind == "bool" else f"<{kind}>"


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _usage_name(param: Any) -> str:
    name = (param.metavar or param.name or "").upper()
    name = name if param.required else f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


class ApexmerCommand(TyperCommand):
    """A typer command whose help follows the rules above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = unwrap(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _tagged(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_usage_name(p) for p in self.get_params(ctx) if _is_argument(p)]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, [_spelled(a) for a in args])


class ApexmerGroup(TyperGroup):
    """A typer group whose help follows the same rules (its commands use ApexmerCommand)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = unwrap(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _tagged(super().get_params(ctx))


def _tagged(params: list[Any]) -> list[Any]:
    """``params`` (``--help`` included) with their type tags and argument names set."""
    for param in params:
        tag = _tag(param)
        param.metavar = (param.metavar or param.name).upper() if _is_argument(param) else tag
        if hasattr(param, "display_type_rich"):  # typer >= 0.2x: the type column
            param.display_type_rich = lambda ctx, tag=tag: tag
    return params


def _spelled(arg: str) -> str:
    name, eq, value = arg.partition("=")
    return ALIASES[name] + eq + value if name in ALIASES else arg


def use_help_classes(app: Any) -> None:
    """Give every command and group registered on ``app`` (a typer.Typer), and on its
    sub-apps, the classes above; call once, after all commands are registered."""
    app.info.cls = ApexmerGroup  # typer's defaults (TyperCommand, TyperGroup) replaced
    for info in app.registered_commands:
        info.cls = ApexmerCommand
    for group in app.registered_groups:
        group.cls = ApexmerGroup
        use_help_classes(group.typer_instance)
