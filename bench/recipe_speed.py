"""Wall time of the README's composite command, this tree against an earlier commit's.

``apexmer loso --config flow --data M --out D`` as a user runs it, on a composite-sized
synthetic corpus (``flow_loso_speed.py``: 442 clips of 28 x 28 (u, v, strain) PNGs, 68
subjects), each run in a fresh process with ``PYTHONPATH`` on one tree (the reference
exported with ``git archive``), one after another in the same run of this script:

- ``reference, --executor local``: the reference tree as the accuracy issue measured its
  preset (24 min on the real composite: one process, one core busy);
- ``reference``: the reference tree's own defaults;
- ``this tree``: this tree's defaults (the recipe the README recommends, ensemble and
  test-time flip included if the preset has them).

``--epochs`` overrides ``train.epochs`` in all of them (default 5, the preset has 50: the
training cost is linear in the epochs, the fixed costs are small; ``--epochs 0`` keeps the
presets' own). The ratios to the first row are the answer; the seconds depend on the
machine and its load.

    PYTHONPATH=src .venv/bin/python bench/recipe_speed.py --ref 252870f [--epochs 5] [--no-local]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_loso_speed import write_corpus  # bench scripts beside this one
from proxy_rank import CLI
from train_speed_vs_ref import ROOT, export


def run_loso(src: Path, manifest: Path, out: Path, extra: list[str]) -> dict[str, float]:
    """Wall seconds and the children's CPU seconds of one ``apexmer loso`` (fresh folder)."""
    cmd = [*CLI, "loso", "--config", "flow", "--data", str(manifest)]
    cmd += ["--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(src)}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed:\n{done.stderr[-2000:]}")
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "cpu_s": cpu, "uf1": summary.get("uf1", float("nan"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="git commit of today's preset")
    ap.add_argument("--epochs", type=int, default=5, help="train.epochs (0: the presets')")
    ap.add_argument("--out", type=Path, default=Path("/tmp/apexmer-recipe-speed"))
    ap.add_argument(
        "--no-local", action="store_true", help="skip the one-core row (the base is then row 2)"
    )
    args = ap.parse_args()
    manifest = write_corpus(args.out / "corpus")
    epochs = [] if args.epochs == 0 else ["--set", f"train.epochs={args.epochs}"]
    with tempfile.TemporaryDirectory(prefix=f"apexmer-{args.ref}-") as tmp:
        ref = export(args.ref, Path(tmp))
        runs = [("reference", ref, []), ("this tree", ROOT / "src", [])]
        if not args.no_local:
            runs.insert(0, ("reference, --executor local", ref, ["--executor", "local"]))
        rows = []
        for i, (label, src, extra) in enumerate(runs):
            res = run_loso(src, manifest, Path(tmp) / f"run{i}", [*epochs, *extra])
            rows.append({"run": label, **{k: round(v, 3) for k, v in res.items()}})
            print(f"{label:30s} wall {res['wall_s']:7.1f} s  cpu {res['cpu_s']:7.1f} s", flush=True)
    base = rows[0]["wall_s"]
    for row in rows:
        row["wall_ratio"] = round(row["wall_s"] / base, 3)
    print(
        json.dumps(
            {
                "ref": args.ref,
                "epochs": args.epochs or "preset",
                "cores": os.cpu_count(),
                "load_avg": os.getloadavg(),
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
