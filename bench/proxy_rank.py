"""Rank recipes on the synthetic proxy composite (bench/proxy_flow.py) by LOSO.

    PYTHONPATH=src .venv/bin/python bench/proxy_rank.py --out RUNS \\
        'baseline()' 'sqrt_balanced(loss.alpha=sqrt_balanced)' 'epochs80(train.epochs=80)'

Each variant is ``name(key=value,...)``: the ``--set`` overrides applied to ``--config``
(default ``flow``); ``name()`` is the preset itself. Every variant is checked against the
config schema before anything runs (a key that does not exist stops the script with the
config's one-line error). The proxy is written to ``RUNS/proxy`` (``--seed``,
``--subset``) unless it is there already, read through ``apexmer data manifest --corpus
megc-flow`` as a user would, then ``apexmer loso`` runs each variant into ``RUNS/<name>``
with ``--executor process --workers 2`` (``--workers``). Resumable: a variant whose folder
has a summary.json of the same resolved config is not run again (LOSO itself resumes a
half-finished folder fold by fold). Writes ``RUNS/ranking.md``: per variant accuracy,
UF1, UAR, UF1 per corpus, the subject-bootstrap interval of UF1 when summary.json has
``uf1_ci``, wall time and its ratio to the first variant's (the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apexmer.config import config_to_dict, load_config
from apexmer.errors import ApexmerError
from proxy_flow import Knobs, knobs_with, write_proxy

VARIANT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*\((.*)\)\s*$", re.S)
# The CLI of the installed package, run with this interpreter and this sys.path.
CLI = [sys.executable, "-c", "import sys; from apexmer.cli.main import main; main()"]
WALL_FILE = "proxy_wall.json"


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: ``a=[1,2],b=3`` -> ``["a=[1,2]", "b=3"]``."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_variant(text: str) -> Variant:
    """``name(key=value,...)`` -> Variant; ValueError naming the expected form."""
    match = VARIANT.match(text)
    if not match:
        raise ValueError(
            f"variant {text!r} must look like name(key=value,...), e.g. "
            "'sqrt_balanced(loss.alpha=sqrt_balanced)' or 'baseline()'"
        )
    overrides = tuple(_split_top(match.group(2)))
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"variant {text!r}: {o!r} is not key=value")
    return Variant(match.group(1), overrides)


def check_variants(variants: Sequence[Variant], config: str) -> dict[str, dict]:
    """Each variant's resolved config as a dict; SystemExit with the config's error for a
    key or value the schema does not know (nothing has run yet)."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SystemExit("error: two variants share a name; give each its own")
    resolved = {}
    for v in variants:
        try:
            resolved[v.name] = config_to_dict(load_config(config, list(v.overrides)))
        except ApexmerError as exc:
            raise SystemExit(f"error: variant {v.name}: {exc}") from None
    return resolved


def _run(cmd: list[str], log: Path | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(log, "a") if log else open(os.devnull, "w") as fh:
        done = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        where = f"; see {log}" if log else ""
        raise SystemExit(f"error: {shlex.join(cmd[3:])} failed (exit {done.returncode}){where}")


def prepare_proxy(root: Path, seed: int, subset: float, knobs: Knobs) -> Path:
    """The proxy's manifest, written through the megc-flow reader (once)."""
    proxy = root / "proxy"
    manifest = proxy / "manifest.csv"
    if not manifest.is_file():
        labels = write_proxy(proxy, seed, knobs, subset)
        _run(
            [
                *CLI,
                "data",
                "manifest",
                "--corpus",
                "megc-flow",
                "--coding",
                str(labels),
                "--root",
                str(proxy / "flows"),
                "--out",
                str(manifest),
            ]
        )
    return manifest


def run_variant(
    variant: Variant, resolved: dict, manifest: Path, root: Path, config: str, workers: int
) -> dict:
    """LOSO of one variant (skipped when its folder is complete); the summary plus
    ``wall_s`` (None when the folder was finished by an earlier invocation in pieces)."""
    out = root / variant.name
    summary_path = out / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("config") != resolved:
            raise SystemExit(
                f"error: {out} holds a run of another config; delete the folder or rename "
                "the variant"
            )
    else:
        partial = (out / "folds").is_dir() and any((out / "folds").iterdir())
        cmd = [*CLI, "loso", "--data", str(manifest), "--config", config, "--out", str(out)]
        cmd += ["--executor", "process", "--workers", str(workers)]
        for o in variant.overrides:
            cmd += ["--set", o]
        out.mkdir(parents=True, exist_ok=True)
        print(f"[{variant.name}] {shlex.join(cmd[3:])}", flush=True)
        start = time.perf_counter()
        _run(cmd, out / "proxy_rank.log")
        wall = time.perf_counter() - start
        (out / WALL_FILE).write_text(
            json.dumps({"wall_s": None if partial else wall, "resumed": partial}) + "\n"
        )
        summary = json.loads(summary_path.read_text())
    wall_info = json.loads((out / WALL_FILE).read_text()) if (out / WALL_FILE).is_file() else {}
    return {**summary, "wall_s": wall_info.get("wall_s")}


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _datasets(summary: dict) -> list[dict]:
    return (summary.get("per_corpus") or {}).get("datasets", [])


def ranking_table(variants: Sequence[Variant], summaries: dict[str, dict]) -> list[str]:
    """Markdown rows, best UF1 first; the wall-time ratio is against the first variant."""
    base_wall = summaries[variants[0].name].get("wall_s")
    corpora = sorted(
        {
            d["dataset"]
            for s in summaries.values()
            for d in s.get("per_corpus", {}).get("datasets", [])
        }
    )
    has_ci = any("uf1_ci" in s for s in summaries.values())
    head = ["variant", "overrides", "accuracy", "UF1", *(["UF1 95 % CI"] if has_ci else []), "UAR"]
    head += [f"UF1 {c}" for c in corpora] + ["wall", "x baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(variants, key=lambda v: -summaries[v.name]["uf1"])
    for v in order:
        s = summaries[v.name]
        per = {d["dataset"]: d["uf1"] for d in _datasets(s)}
        ci = s.get("uf1_ci")
        wall = s.get("wall_s")
        row = [v.name, ", ".join(f"`{o}`" for o in v.overrides) or "(preset)"]
        row += [_fmt(s["accuracy"]), f"**{_fmt(s['uf1'])}**"]
        if has_ci:
            row.append(f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "–")
        row.append(_fmt(s["uar"]))
        row += [_fmt(per.get(c)) for c in corpora]
        row.append("–" if wall is None else f"{wall / 60:.1f} min")
        row.append(_fmt(wall / base_wall, 2) if wall and base_wall else "–")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{cpu}, {os.cpu_count()} cores, load average at the end {load}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "variants", nargs="+", help="name(key=value,...); the first is the baseline"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs")
    parser.add_argument("--config", default="flow", help="preset or YAML (default flow)")
    parser.add_argument("--seed", type=int, default=0, help="the proxy's seed")
    parser.add_argument("--subset", type=float, default=1.0, help="share of subjects kept")
    parser.add_argument("--noise-scale", type=float, default=Knobs.noise_scale)
    parser.add_argument("--workers", type=int, default=2, help="LOSO processes")
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(t) for t in args.variants]
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    resolved = check_variants(variants, args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    knobs = knobs_with(noise_scale=args.noise_scale)
    manifest = prepare_proxy(args.out, args.seed, args.subset, knobs)
    summaries = {
        v.name: run_variant(v, resolved[v.name], manifest, args.out, args.config, args.workers)
        for v in variants
    }
    proxy = json.loads((args.out / "proxy" / "proxy.json").read_text())
    text = [
        "# Proxy ranking",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {_machine()}; proxy seed {proxy['seed']}, "
        f"subset {proxy['subset']}, {proxy['n_clips']} clips, knobs digest {proxy['digest']}; "
        f"config `{args.config}`.",
        "",
        "    " + shlex.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "",
        *ranking_table(variants, summaries),
        "",
        "Pooled LOSO scores on the synthetic proxy (fixed epochs, last epoch). It guides, it "
        "does not decide: the real composite decides.",
    ]
    (args.out / "ranking.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
