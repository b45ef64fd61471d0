"""Compare finished runs on the same samples: each run's figures with intervals, and for
each pair the PAIRED subject-bootstrap interval of the difference (``bootstrap``).

A run is a run folder (``summary.json`` + ``predictions.csv``, as ``apexmer loso``
writes it). Runs whose tested samples (keys) or true labels differ are refused: a paired
comparison needs the same samples, and two separate intervals say little about a gap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from apexmer.errors import DataError
from apexmer.evaluation import metrics as M
from apexmer.evaluation.bootstrap import METRICS, bootstrap_intervals, paired_bootstrap
from apexmer.evaluation.report import fmt_ci, md_table
from apexmer.evaluation.scores import subject_groups_of

TITLES = {"accuracy": "accuracy", "uf1": "UF1", "uar": "UAR"}


def load_run(path: str | Path) -> dict[str, Any]:
    """``{"path", "name", "summary", "predictions"}`` of a run folder, predictions sorted
    by key."""
    path = Path(path)
    files = [path / "summary.json", path / "predictions.csv"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"{path} is not a finished run folder (no {', '.join(missing)})",
            fix="pass folders written by `apexmer loso` that ran to the end",
        )
    try:
        summary = json.loads(files[0].read_text())
        preds = pd.read_csv(files[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the run's files ({exc})") from None
    need = {"key", "dataset", "subject", "y_true", "y_pred"}
    if not need <= set(preds.columns) or "classes" not in summary:
        raise DataError(f"{files[1]} lacks the columns {sorted(need)} or summary.json its classes")
    preds = preds.sort_values("key", kind="stable").reset_index(drop=True)
    return {"path": str(path), "name": path.name, "summary": summary, "predictions": preds}


def check_same_samples(runs: list[dict[str, Any]]) -> None:
    """Raise a one-line ``DataError`` unless every run tested the same samples with the
    same classes and true labels."""
    first = runs[0]
    keys = set(first["predictions"]["key"])
    for run in runs[1:]:
        other = set(run["predictions"]["key"])
        if other != keys or len(run["predictions"]) != len(first["predictions"]):
            raise DataError(
                f"{first['path']} and {run['path']} were not run on the same samples "
                f"({len(keys - other)} only in the first, {len(other - keys)} only in the "
                "second); a paired comparison needs the same samples",
                fix="compare runs of one manifest under one protocol (same --datasets)",
            )
        if run["summary"]["classes"] != first["summary"]["classes"] or not np.array_equal(
            run["predictions"]["y_true"].to_numpy(), first["predictions"]["y_true"].to_numpy()
        ):
            raise DataError(
                f"{first['path']} and {run['path']} label the same samples differently "
                "(other classes or coding sheet)",
                fix="compare runs made from the same manifest",
            )


def compare_runs(
    paths: list[str | Path], n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Every run's figures with intervals and every pair's paired difference (A - B)."""
    if len(paths) < 2:
        raise DataError("compare needs at least two run folders", fix="pass RUN_A RUN_B ...")
    if n_resamples < 100:
        raise DataError(f"--bootstrap {n_resamples}: use at least 100 resamples (default 2000)")
    runs = [load_run(p) for p in paths]
    check_same_samples(runs)
    if len({r["name"] for r in runs}) < len(runs):  # runs/a/run, runs/b/run: full paths
        for r in runs:
            r["name"] = r["path"]
    base = runs[0]["predictions"]
    classes = list(runs[0]["summary"]["classes"])
    k = len(classes)
    y = base["y_true"].to_numpy().astype(np.int64)
    groups = subject_groups_of(base)
    rows = []
    for run in runs:
        p = run["predictions"]["y_pred"].to_numpy().astype(np.int64)
        s = run["summary"]
        rows.append(
            {
                "run": run["path"],
                "name": run["name"],
                "protocol": s.get("protocol_name", "loso"),
                "model": (s.get("config") or {}).get("model", {}).get("name"),
                "accuracy": float(np.mean(p == y)),
                "uf1": M.uf1(y, p, k),
                "uar": M.uar(y, p, k),
                **bootstrap_intervals(y, p, groups, k, n_resamples, seed, confidence),
            }
        )
    pairs = []
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            pa = runs[i]["predictions"]["y_pred"].to_numpy().astype(np.int64)
            pb = runs[j]["predictions"]["y_pred"].to_numpy().astype(np.int64)
            diff = paired_bootstrap(y, pa, pb, groups, k, n_resamples, seed, confidence)
            pairs.append({"a": runs[i]["path"], "b": runs[j]["path"], **diff})
    return {
        "runs": rows,
        "pairs": pairs,
        "n_samples": int(y.size),
        "n_subjects": len(set(groups.tolist())),
        "classes": classes,
        "bootstrap": {
            "n_resamples": n_resamples,
            "seed": seed,
            "confidence": confidence,
            "unit": "subject",
            "paired": True,
        },
    }


def render_compare(result: dict[str, Any]) -> str:
    """The comparison as markdown: the runs' table, then one table of paired differences."""
    boot = result["bootstrap"]
    conf = f"{100 * boot['confidence']:g} %"
    lines = [
        "# apexmer compare",
        "",
        f"{result['n_samples']} samples, {result['n_subjects']} subjects, the same in every "
        f"run. Intervals: {conf}, bootstrap over subjects ({boot['n_resamples']} resamples, "
        f"seed {boot['seed']}); differences are PAIRED (both runs scored on the same "
        "resampled subjects).",
        "",
        *md_table(
            ["run", "protocol", "model", *(TITLES[m] for m in METRICS)],
            [
                [
                    r["name"],
                    r["protocol"],
                    r["model"] or "–",
                    *(fmt_ci(r[m], r[f"{m}_ci"]) for m in METRICS),
                ]
                for r in result["runs"]
            ],
        ),
        "",
        "## Paired differences (A - B)",
        "",
    ]
    names = {r["run"]: r["name"] for r in result["runs"]}
    lines += md_table(
        ["A", "B", "metric", "A - B", f"{conf} interval", "A better in", "verdict"],
        [
            [
                names[pair["a"]],
                names[pair["b"]],
                TITLES[m],
                f"{pair[m]['difference']:+.4f}",
                f"[{pair[m]['ci'][0]:+.4f}, {pair[m]['ci'][1]:+.4f}]",
                f"{100 * pair[m]['a_better']:.1f} %",
                _verdict(pair[m]["ci"]),
            ]
            for pair in result["pairs"]
            for m in METRICS
        ],
    )
    lines += [
        "",
        "A difference whose interval holds 0 is not shown by these subjects; "
        "'A better in' is the share of resamples in which A scores higher.",
        "",
    ]
    return "\n".join(lines)


def _verdict(ci: list[float]) -> str:
    if ci[0] > 0:
        return "A higher"
    if ci[1] < 0:
        return "B higher"
    return "not told apart"
