"""Can the demo's data be learnt from the apex frame alone, from apex minus onset, or from
the onset->apex optical flow?

    PYTHONPATH=src .venv/bin/python bench/demo_input_learnability.py [--cache CACHE]

Writes the default synthetic corpus and preprocesses it (TV-L1 flow included; or uses
``--cache``, which must hold flows), then trains on 6 subjects and scores the 2 held out,
twice (sub01+sub02, sub05+sub06), for each input: the paper's apex frame, the
apex-minus-onset difference (with the earlier demo preset's network, bench/demo_diff.yaml),
and the flow, with that network, with the ``flow`` preset and with the ``demo`` preset
(both SSSNet at 28 px). This is how the demo preset was chosen (configs/demo.yaml).
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

# The demo preset as it was before flow: the tiny SE-ResNeXt on apex - onset at 64 px.
DIFF_DEMO = str(Path(__file__).parent / "demo_diff.yaml")
HOLD_OUTS = (("casme2/sub01", "casme2/sub02"), ("casme2/sub05", "casme2/sub06"))


def score(manifest: Path, preset: str, overrides: list[str]) -> dict:
    """Held-out accuracy and UF1 of ``preset`` (a name or YAML path) with ``overrides``."""
    config = load_config(preset, overrides)
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
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.cache / "manifest.csv" if args.cache else None
        if manifest is None:
            corpus = write_synthetic_corpus(Path(tmp) / "corpus", seed=0)
            samples = read_casme2(corpus.root / CODING_NAME, root=corpus.root / FRAMES_DIR)
            manifest = preprocess_corpus(
                samples, Path(tmp) / "cache", PreprocessConfig(), workers=2
            ).manifest
        print("input,network,input_size,epochs,held_out_accuracy,held_out_uf1,train_acc,seconds")
        for name, preset, extra in (
            ("apex frame", DIFF_DEMO, ["data.input=frame"]),
            (
                "apex frame",
                DIFF_DEMO,
                ["data.input=frame", "data.input_size=96", "train.epochs=30"],
            ),
            ("apex - onset", DIFF_DEMO, []),
            ("onset->apex flow", DIFF_DEMO, ["data.input=flow"]),
            ("onset->apex flow", "flow", []),
            ("onset->apex flow", "demo", []),
        ):
            t0 = time.perf_counter()
            r = score(manifest, preset, [*extra, f"train.threads={args.threads}"])
            cfg = load_config(preset, extra)
            print(
                f"{name},{cfg.model.name},{cfg.data.input_size},{cfg.train.epochs},"
                f"{r['accuracy']:.3f},{r['uf1']:.3f},{r['train_acc']:.2f},"
                f"{time.perf_counter() - t0:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
