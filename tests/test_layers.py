"""The package's architecture, checked: lower layers never import higher ones, no two
modules import each other (lazy imports inside functions included), and the project's own
code uses the modules' current homes, not the old paths kept for users (issue 19 item 8)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "apexmer"

# Lowest first; a module may import its own layer and those below it.
LAYERS = [
    {"errors", "fileio", "dlib_models", "workers", "portable", "__init__"},
    {"data"},
    {"face"},
    {"spotting"},
    {"preprocess"},
    {"config"},
    {"models"},
    {"training"},
    {"evaluation"},
    {"inference"},
    {"serving"},
    {"cli", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every apexmer module this file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in MODULES:  # `from pkg import name` -> pkg
                name = name.rpartition(".")[0]
            if name.startswith("apexmer."):
                found.add(name)
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer() -> None:
    assert {_layer(m) for m in MODULES} <= set(RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    higher = sorted(m for m in GRAPH[module] if RANK[_layer(m)] > RANK[_layer(module)])
    assert not higher, f"{module} imports higher layers: {higher}"


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_spotting_has_one_home() -> None:
    """Apex spotting in a clip, its evaluation and interval spotting all live in spotting/;
    the geometry both need lives in face/, below it."""
    spotting = {m for m in MODULES if m.startswith("apexmer.spotting.")}
    assert {"apexmer.spotting.apex", "apexmer.spotting.apex_eval"} <= spotting
    assert {"apexmer.spotting.motion", "apexmer.spotting.intervals"} <= spotting
    assert {"apexmer.face.landmarks", "apexmer.face.align", "apexmer.face.rois"} <= set(MODULES)
    assert not any(m.startswith("apexmer.preprocess.") and "spot" in m for m in MODULES)


def test_old_module_paths_still_import() -> None:
    from apexmer.preprocess import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new)
    from apexmer.preprocess.spotting import spot_clip  # an old path, as users wrote it

    from apexmer.spotting import spot_clip as current

    assert spot_clip is current


def test_project_code_uses_the_new_paths() -> None:
    from apexmer.preprocess import MOVED

    allowed = {SRC / "preprocess" / "__init__.py", Path(__file__).resolve()}
    files = [
        *SRC.rglob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "bench").rglob("*.py"),
        *(ROOT / "docs").rglob("*.md"),
        ROOT / "README.md",
    ]
    stale = [
        f"{path.relative_to(ROOT)}: {old}"
        for path in files
        if path.resolve() not in allowed
        for old in MOVED
        if old in path.read_text()
    ]
    assert not stale, stale
