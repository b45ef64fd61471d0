"""Fold-packed training, this tree's ``training/packed.py`` vs an earlier commit's, in one
process on the same data (alternating runs, best of ``--repeats``, in CPU seconds of this
process: on a shared machine wall time mostly measures the neighbours).

The demo's setting by default (seresnext_tiny, 64 px, batch 8, k=4 folds of 48 samples):

    PYTHONPATH=src python bench/packed_fit_speed.py --ref eb6652a
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from apexmer.config import load_config
from apexmer.training import packed as new


def load_reference(ref: str) -> object:
    """``training/packed.py`` as it was at git ``ref``, imported as its own module."""
    text = subprocess.run(
        ["git", "show", f"{ref}:src/apexmer/training/packed.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "packed_ref.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("packed_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["packed_ref"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="eb6652a", help="git commit of the baseline")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--n", type=int, default=48, help="training samples per fold")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    cores = torch.get_num_threads()
    config = load_config(  # the image demo (uint8 crops), as the reference commit knew it
        str(Path(__file__).parent / "demo_diff.yaml"),
        [f"train.epochs={args.epochs}", f"train.threads={cores}", *args.sets],
    )
    s = config.data.input_size
    g = torch.Generator().manual_seed(0)
    folds = [
        new.FoldData(
            x=torch.randint(0, 256, (args.n - f, 3, s, s), dtype=torch.uint8, generator=g),
            y=torch.randint(0, 5, (args.n - f,), generator=g),
            seed=f,
        )
        for f in range(args.k)
    ]
    ref = load_reference(args.ref)
    ref_folds = [ref.FoldData(x=fd.x, y=fd.y, seed=fd.seed) for fd in folds]
    times: dict[str, list[float]] = {"reference": [], "this tree": []}
    for _ in range(args.repeats):  # alternating: a load spike hits both alike
        for label, module, data in (("reference", ref, ref_folds), ("this tree", new, folds)):
            t0 = time.process_time()  # CPU seconds of this process: other load counts less
            module.fit_packed(config, data, 5)
            times[label].append(time.process_time() - t0)
    best = {label: min(t) for label, t in times.items()}
    pairs = sorted(r / n for r, n in zip(times["reference"], times["this tree"], strict=True))
    print(
        f"# packed_fit_speed: {config.model.name}, {s} px, batch {config.train.batch_size}, "
        f"k={args.k}, {args.epochs} epoch(s), {cores} threads, best of {args.repeats}"
    )
    print(f"# median of the {len(pairs)} paired ratios: {pairs[len(pairs) // 2]:.2f}")
    print("code,cpu_seconds,vs_reference")
    for label, sec in best.items():
        print(
            f"{label} ({args.ref if label == 'reference' else 'HEAD+'}),{sec:.3f},"
            f"{best['reference'] / sec:.2f}"
        )


if __name__ == "__main__":
    main()
