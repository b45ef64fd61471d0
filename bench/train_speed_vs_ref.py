"""Training speed of this tree against an earlier commit's whole ``apexmer`` package.

Each measurement runs in a fresh child process with ``PYTHONPATH`` pointing at one tree
(the reference exported with ``git archive``), on the same synthetic folds, alternating
reference and this tree, and reports CPU seconds of the child (on a shared machine wall
time mostly measures the neighbours). Two paths: ``fit`` one fold after another, and
``fit_packed`` of all folds at once. The demo's image setting by default
(``bench/demo_diff.yaml``: seresnext_tiny, 64 px, batch 8, k=4 folds of 45-48 samples):

    PYTHONPATH=src python bench/train_speed_vs_ref.py --ref c44ca01
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the child: only APIs that both trees have.
CHILD = r"""
import json, sys, time, torch
from apexmer.config import load_config
from apexmer.training.engine import fit
from apexmer.training.packed import FoldData, fit_packed
path, mode, k, n, epochs, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
config = load_config(path, [f"train.epochs={epochs}", f"train.threads={threads}"])
s, g = config.data.input_size, torch.Generator().manual_seed(0)
def inputs(m):  # stored form: uint8 images, or float16 flow fields
    if config.data.input == "flow":
        return torch.randn(m, len(config.data.flow_channels), s, s, generator=g).half()
    return torch.randint(0, 256, (m, 3, s, s), dtype=torch.uint8, generator=g)
folds = [
    FoldData(x=inputs(n - f), y=torch.randint(0, 5, (n - f,), generator=g), seed=f)
    for f in range(k)
]
t0 = time.process_time()
if mode == "packed":
    fit_packed(config, folds, 5)
else:
    for fd in folds:
        fit(config, fd.x, fd.y, 5, fd.seed)
print(json.dumps({"cpu_s": time.process_time() - t0}))
"""


def export(ref: str, out: Path) -> Path:
    """``src/`` of git ``ref`` under ``out``."""
    archive = out / "src.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    return out / "src"


def child_seconds(src: Path, mode: str, args: argparse.Namespace) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    argv = [str(a) for a in (args.config, mode, args.k, args.n, args.epochs, args.threads)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{src} {mode} failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["cpu_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="git commit of the baseline")
    ap.add_argument(
        "--config", default=str(ROOT / "bench" / "demo_diff.yaml"), help="a preset or a YAML"
    )
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--n", type=int, default=48, help="training samples of the first fold")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["sequential", "packed"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"apexmer-{args.ref}-") as tmp:
        compare({"reference": export(args.ref, Path(tmp)), "this tree": ROOT / "src"}, args)


def compare(trees: dict[str, Path], args: argparse.Namespace) -> None:
    print(
        f"# train_speed_vs_ref: {Path(args.config).name}, k={args.k}, n={args.n}, "
        f"{args.epochs} epoch(s), {args.threads} threads, best of {args.repeats} "
        "(CPU seconds of the child)"
    )
    print("mode,reference_s,this_tree_s,ratio,median_paired_ratio")
    for mode in args.modes:
        times: dict[str, list[float]] = {label: [] for label in trees}
        for _ in range(args.repeats):  # alternating: a load spike hits both alike
            for label, src in trees.items():
                times[label].append(child_seconds(src, mode, args))
        ref, new = min(times["reference"]), min(times["this tree"])
        pairs = sorted(r / t for r, t in zip(times["reference"], times["this tree"], strict=True))
        print(
            f"{mode},{ref:.3f},{new:.3f},{ref / new:.2f},{pairs[len(pairs) // 2]:.2f}", flush=True
        )


if __name__ == "__main__":
    main()
