"""Preprocessing throughput (clips/s) and peak memory on the demo corpus, 1 vs N workers.

    PYTHONPATH=src .venv/bin/python bench/preprocess_throughput.py [--subjects 8 --clips 8]

Writes the default synthetic corpus once (its time is reported too), then runs
``preprocess_corpus`` into a fresh cache per setting. Peak memory is the largest resident
set of this process and of the worker processes (``ru_maxrss``), in MB.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from apexmer.data.casme2 import read_casme2
from apexmer.data.synth import write_synthetic_corpus
from apexmer.preprocess.pipeline import PreprocessConfig, preprocess_corpus


def peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = write_synthetic_corpus(Path(tmp) / "corpus", args.subjects, args.clips, seed=0)
        synth_s = time.perf_counter() - t0
        samples = read_casme2(info.coding, root=info.frames_root, classes="5class")
        print(
            f"# synthetic corpus: {info.n_clips} clips written in {synth_s:.1f} s; "
            f"{len(samples)} in the 5-class task"
        )
        print("workers,seconds,clips_per_s,vs_1_worker,ok,problems")
        base = None
        for workers in args.workers:
            t0 = time.perf_counter()
            res = preprocess_corpus(
                samples, Path(tmp) / f"cache{workers}", PreprocessConfig(), workers=workers
            )
            seconds = time.perf_counter() - t0
            rate = len(samples) / seconds
            base = base or rate
            print(
                f"{workers},{seconds:.1f},{rate:.2f},{rate / base:.2f},{res.n_ok},{res.n_failed}",
                flush=True,
            )
        print(
            f"# peak RSS: main process {peak_mb(resource.RUSAGE_SELF):.0f} MB, "
            f"largest worker {peak_mb(resource.RUSAGE_CHILDREN):.0f} MB"
        )


if __name__ == "__main__":
    main()
