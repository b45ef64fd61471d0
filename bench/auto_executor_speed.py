"""``--executor auto`` (the commands' default) against ``local`` on the composite-shaped
flow corpus of ``flow_loso_speed.py``: wall time of each, and the check that the
predictions are identical.

    PYTHONPATH=src .venv/bin/python bench/auto_executor_speed.py [--epochs 5] [--out DIR]

Both run the ``flow`` preset (``pack_folds: 8``: 68 folds in 9 groups) with
``train.epochs`` lowered to ``--epochs`` so the pair takes minutes; ``auto`` runs one fold
group per core (``executors.plan_auto``), each on one thread, as ``local`` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from apexmer.config import load_config
from apexmer.evaluation.executors import plan_auto, usable_cpus
from apexmer.evaluation.protocol import run_loso

sys.path.insert(0, str(Path(__file__).parent))
from flow_loso_speed import write_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/apexmer-auto-bench"))
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    manifest = write_corpus(args.out / "corpus")
    config = load_config("flow", [f"train.epochs={args.epochs}"])
    n_groups = -(-68 // config.train.pack_folds)
    print(f"{usable_cpus()} cores; auto runs {plan_auto(config, n_groups, None)}")
    walls, predictions = {}, {}
    for executor in ("auto", "local"):
        out = args.out / executor
        start = time.perf_counter()
        summary = run_loso(manifest, config, out, executor=executor)
        walls[executor] = time.perf_counter() - start
        predictions[executor] = (out / "predictions.csv").read_text()
        print(f"{executor:>5}: {walls[executor]:.1f} s wall, UF1 {summary['uf1']:.4f}")
    same = predictions["auto"] == predictions["local"]
    print(
        f"local / auto wall: {walls['local'] / walls['auto']:.2f}x; predictions identical: {same}"
    )


if __name__ == "__main__":
    main()
