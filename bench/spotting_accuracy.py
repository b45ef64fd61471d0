"""Apex spotting accuracy on the default synthetic corpus, for each spotter option.

    PYTHONPATH=src .venv/bin/python bench/spotting_accuracy.py [--subjects 8 --clips 8]

The corpus's ground-truth apex is where its motion peaks. Target (issue 3): within 1 frame
on at least 90% of clips. Prints n, MAE, median and the shares within 1/5/10 frames.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from apexmer.data.casme2 import read_casme2
from apexmer.data.synth import write_synthetic_corpus
from apexmer.spotting.apex import SpotConfig
from apexmer.spotting.apex_eval import evaluate_spotting, spotting_scores

SETTINGS = {
    "paper (backward, offset term)": SpotConfig(),
    "authors' code (backward, no offset term)": SpotConfig(offset_term=False),
    "symmetric, offset term": SpotConfig(denominator="symmetric"),
    "symmetric, no offset term": SpotConfig(denominator="symmetric", offset_term=False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        info = write_synthetic_corpus(Path(tmp), args.subjects, args.clips, seed=args.seed)
        truth = info.ground_truth.set_index(["folder", "clip"])["apex"]
        samples = read_casme2(info.coding, root=info.frames_root, classes="all")
        # Score against the true motion peak, also for the row whose sheet apex is "/".
        samples.samples = [s.with_(apex=int(truth[(s.subject, s.clip)])) for s in samples.samples]
        print(f"# {len(samples)} clips, seed {args.seed}")
        rows = []
        for name, config in SETTINGS.items():
            t0 = time.perf_counter()
            table = evaluate_spotting(samples, config, workers=args.workers)
            scores = spotting_scores(table["error"].to_list())
            rows.append({"setting": name, **scores, "seconds": round(time.perf_counter() - t0, 1)})
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
