"""Can the demo's data be learnt from the apex frame alone, or from apex minus onset?

    PYTHONPATH=src .venv/bin/python bench/demo_input_learnability.py [--cache CACHE]

Writes the default synthetic corpus and preprocesses it (or uses ``--cache``), then trains
the demo preset's network on 6 subjects and scores the 2 held out, twice (sub01+sub02,
sub05+sub06), for each input: the paper's apex frame, and the apex-minus-onset difference.
This is why the demo preset uses ``data.input: diff`` (configs/demo.yaml).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from apexmer.config import load_config
from apexmer.data.casme2 import read_casme2
from apexmer.data.synth import CODING_NAME, FRAMES_DIR, write_synthetic_corpus
from apexmer.evaluation.metrics import classification_metrics
from apexmer.preprocess.pipeline import PreprocessConfig, preprocess_corpus
from apexmer.training.dataset import load_manifest_data
from apexmer.training.engine import fit, predict_proba

HOLD_OUTS = (("casme2/sub01", "casme2/sub02"), ("casme2/sub05", "casme2/sub06"))


def score(manifest: Path, overrides: list[str]) -> dict:
    config = load_config("demo", overrides)
    data = load_manifest_data(manifest, config.data)
    groups = np.array(data.groups)
    y_true, y_pred, train_acc = [], [], []
    for held in HOLD_OUTS:
        test = np.isin(groups, held)
        result = fit(config, data.inputs[~test], data.labels[~test], len(data.classes), seed=0)
        y_pred.append(predict_proba(result.model, data.inputs[test], config).argmax(1))
        y_true.append(data.labels[test].numpy())
        train_acc.append(result.history[-1]["train_acc"])
    m = classification_metrics(np.concatenate(y_true), np.concatenate(y_pred), list(data.classes))
    return {"accuracy": m["accuracy"], "uf1": m["uf1"], "train_acc": float(np.mean(train_acc))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None, help="an existing demo cache")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.cache / "manifest.csv" if args.cache else None
        if manifest is None:
            corpus = write_synthetic_corpus(Path(tmp) / "corpus", seed=0)
            samples = read_casme2(corpus.root / CODING_NAME, root=corpus.root / FRAMES_DIR)
            manifest = preprocess_corpus(
                samples, Path(tmp) / "cache", PreprocessConfig(), workers=2
            ).manifest
        print("input,input_size,epochs,held_out_accuracy,held_out_uf1,train_acc,seconds")
        for name, extra in (
            ("apex frame", ["data.input=frame"]),
            ("apex frame", ["data.input=frame", "data.input_size=96", "train.epochs=30"]),
            ("apex - onset", ["data.input=diff"]),
        ):
            t0 = time.perf_counter()
            r = score(manifest, extra)
            cfg = load_config("demo", extra)
            print(
                f"{name},{cfg.data.input_size},{cfg.train.epochs},{r['accuracy']:.3f},"
                f"{r['uf1']:.3f},{r['train_acc']:.2f},{time.perf_counter() - t0:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
