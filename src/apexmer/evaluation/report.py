"""Markdown report and PNG figures of one evaluation run; the paper's Table 4 side by side,
and the MEGC 2019 composite's published re-runs beside a composite LOSO run.

Every figure is read from ``summary`` (``scores.score_predictions`` computed it, and
``summary.json`` holds the same dict), never recomputed here, so the two agree; only a
summary that lacks a part (an older run) has it computed from ``predictions``.

Inputs (written by the protocol runner):

``summary`` (dict), keys:
    accuracy, uf1, uar (floats, on predictions pooled over all folds); n_samples, n_folds;
    protocol (str, e.g. "LOSO, 26 folds, fixed 100 epochs, last epoch's model, predictions
    pooled over folds then scored"); config (dict, the resolved config); classes (list of
    names, label-index order); per_class (``metrics.per_class`` output); confusion (K x K
    nested list, rows true); folds (list of {fold, subject, n, accuracy, warnings: [str]},
    optional uf1); coding_version; version; oracle (bool).
    Optional: accuracy_ci, uf1_ci, uar_ci ([lo, hi]) and bootstrap ({n_resamples, seed,
    confidence, n_subjects}); protocol_name (loso | lodo | cross); per_corpus
    ({"datasets": [{dataset, n, n_subjects, accuracy, uf1, uar, *_ci}]}); ensemble
    ({members, member_scores, spread}: ``evaluation.members``).
    Optional: uf1_per_fold or uf1_per_fold_mean (float; computed from ``predictions`` when
    absent); setting (dict for ``paper.matching_paper_row``: dataset, num_classes/classes,
    model, frame, n_samples, n_subjects, protocol, oracle, and recipe keys epochs, lr, ...;
    derived from the other keys and the config when absent); warnings (run-level strings).
``predictions`` (DataFrame), one row per clip: key, dataset, subject, fold, y_true, y_pred,
    label, pred_label, prob_<class>...
``history`` (DataFrame or None), one row per fold and epoch: fold, epoch, loss, train_acc
    (and member, for an ensemble).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from apexmer.evaluation.figures import plot_confusion, plot_curves, plot_per_subject
from apexmer.evaluation.metrics import per_fold_f1
from apexmer.evaluation.paper import (
    FRAME_TITLES,
    MODEL_TITLES,
    PAPER,
    PAPER_SETTING,
    TABLE3,
    TABLE4,
    matching_paper_row,
    normalize_frame,
    paper_mismatch,
    recipe_differences,
)
from apexmer.evaluation.published import (
    COMPOSITE,
    COMPOSITE_LABEL,
    COMPOSITE_RERUNS,
    composite_mismatch,
)
from apexmer.evaluation.scores import score_predictions
from apexmer.fileio import write_text

ORACLE_LABEL = "ORACLE: epochs chosen on the held-out subject; not a valid estimate"
CONFUSION_PNG = "confusion.png"
SUBJECTS_PNG = "per_subject.png"
CURVES_PNG = "curves.png"


def fmt(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{float(x):.4f}"


def fmt_ci(value: Any, ci: Sequence[float] | None) -> str:
    """``0.7130 [0.6350, 0.7840]``; the value alone when there is no interval."""
    return fmt(value) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in cells],
    ]


# ---------------------------------------------------------------- markdown


def _lookup(config: Any, key: str) -> Any:
    """First value under ``key`` anywhere in a nested config dict (``model`` may be a dict
    with ``name``)."""
    if not isinstance(config, dict):
        return None
    if key in config:
        value = config[key]
        return value.get("name") if isinstance(value, dict) else value
    for value in config.values():
        found = _lookup(value, key)
        if found is not None:
            return found
    return None


def report_setting(summary: dict[str, Any], predictions: pd.DataFrame) -> dict[str, Any]:
    """The setting compared with the paper: ``summary["setting"]`` filled in from the rest."""
    config = summary.get("config") or {}
    datasets = sorted(predictions["dataset"].unique()) if "dataset" in predictions else []
    derived = {
        "dataset": datasets[0] if len(datasets) == 1 else "+".join(map(str, datasets)),
        "classes": list(summary.get("classes", [])),
        "model": _lookup(config, "model"),
        "frame": _lookup(config, "frame"),
        "n_samples": summary.get("n_samples"),
        "n_subjects": summary.get("n_folds"),
        "protocol": summary.get("protocol"),
        "oracle": bool(summary.get("oracle")),
        "optimizer": _lookup(config, "optimizer") or _lookup(config, "optim"),
        **{k: _lookup(config, k) for k in ("epochs", "batch_size", "lr", "loss", "input_size")},
        "ensemble": _lookup(config, "ensemble"),
        "tta": _lookup(config, "tta"),
    }
    return {**derived, **(summary.get("setting") or {})}


def _other_aggregation(summary: dict[str, Any], predictions: pd.DataFrame, k: int) -> float | None:
    for key in ("uf1_per_fold", "uf1_per_fold_mean"):
        if summary.get(key) is not None:
            return float(summary[key])
    if {"y_true", "y_pred", "fold"} <= set(predictions.columns) and len(predictions):
        return per_fold_f1(
            predictions["y_true"].to_numpy(),
            predictions["y_pred"].to_numpy(),
            predictions["fold"].to_numpy(),
            k,
        )
    return None


def _paper_section(summary: dict[str, Any], predictions: pd.DataFrame) -> list[str]:
    setting = report_setting(summary, predictions)
    lines = ["## Compared with the paper", ""]
    row = matching_paper_row(setting)
    if row is None:
        reasons = "; ".join(paper_mismatch(setting))
        return [
            *lines,
            f"No comparison with {PAPER} is shown: this run's setting differs "
            f"from theirs ({reasons}).",
            "",
        ]
    lines += md_table(
        ["", "accuracy", "UF1", "UAR"],
        [
            [
                "this run (pooled)",
                fmt(summary["accuracy"]),
                fmt(summary["uf1"]),
                fmt(summary.get("uar")),
            ],
            [row.title, fmt(row.accuracy), fmt(row.uf1), "–"],
        ],
    )
    # Table 3 of the paper (other methods, same setting), with this run as its own row.
    lines += ["", f"{PAPER}, Table 3 (CASME II, 5 classes, LOSO), with this run:", ""]
    lines += md_table(
        ["method", "accuracy", "UF1"],
        [[name, fmt(acc), fmt(f1) if f1 is not None else "–"] for name, (acc, f1) in TABLE3.items()]
        + [["this run", fmt(summary["accuracy"]), fmt(summary["uf1"])]],
    )
    caveats = recipe_differences(setting)
    lines += [
        "",
        f"Setting: {PAPER_SETTING.dataset}, {len(PAPER_SETTING.classes)} classes, "
        f"{PAPER_SETTING.n_samples} samples, {PAPER_SETTING.n_subjects} subjects, LOSO.",
    ]
    if caveats:
        lines.append("Recipe differences: " + "; ".join(caveats) + ".")
    return [*lines, ""]


def render_report(
    summary: dict[str, Any],
    predictions: pd.DataFrame,
    class_names: Sequence[str],
    figures: dict[str, str],
) -> str:
    """The report's markdown (pure); ``figures`` maps a title to a PNG path relative to it."""
    names = [str(c) for c in class_names]
    folds = list(summary.get("folds", []))
    lines: list[str] = []
    if summary.get("oracle"):
        lines += [f"> **{ORACLE_LABEL}**", ""]
    lines += ["# apexmer evaluation report", ""]
    other = _other_aggregation(summary, predictions, len(names))
    lines += [
        f"- **Accuracy**: {fmt_ci(summary['accuracy'], summary.get('accuracy_ci'))}",
        f"- **UF1 (pooled)**: {fmt_ci(summary['uf1'], summary.get('uf1_ci'))} — macro-F1 over "
        f"all {len(names)} classes on the predictions of all folds pooled, then scored once",
        f"- **UAR**: {fmt_ci(summary.get('uar'), summary.get('uar_ci'))} — mean recall over "
        "classes present",
        *_interval_note(summary),
        f"- **Samples**: {summary.get('n_samples')}  **Folds**: {summary.get('n_folds')}",
        f"- **Protocol**: {summary.get('protocol', '')}",
        f"- The other aggregation, macro-F1 per fold averaged over folds (drops classes a "
        f"subject lacks; not comparable with the pooled UF1): {fmt(other)}",
        *_ensemble_lines(summary),
        f"- **Coding sheet**: {summary.get('coding_version', 'unknown')}  "
        f"**apexmer**: {summary.get('version', 'unknown')}",
        "",
    ]
    for title, rel in figures.items():
        lines += [f"![{title}]({rel})", ""]
    lines += ["## Per class", ""]
    lines += md_table(
        ["class", "precision", "recall", "F1", "support"],
        [
            [c["class"], fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), c["support"]]
            for c in summary.get("per_class", [])
        ],
    )
    lines += ["", "## Confusion matrix (rows true, columns predicted)", ""]
    lines += md_table(
        ["true \\ pred", *names],
        [[names[i], *row] for i, row in enumerate(summary.get("confusion", []))],
    )
    lines += ["", "## Per fold", "", *_fold_table(summary, folds), ""]
    lines += _corpus_section(summary, predictions, names)
    warnings = [
        f"{f.get('subject', f.get('fold'))}: {w}" for f in folds for w in f.get("warnings", [])
    ] + list(summary.get("warnings", []))
    lines += ["## Degenerate folds and warnings", ""]
    lines += [f"- {w}" for w in warnings] or ["None."]
    left_out = list(summary.get("data_problems", []))
    lines += ["", f"## Data problems ({len(left_out)} left out or reported)", ""]
    lines += [f"- {p}" for p in left_out] or ["None: every sample of the manifest was used."]
    lines += ["", *_published_section(summary, predictions), *_paper_section(summary, predictions)]
    config = json.loads(json.dumps(summary.get("config") or {}, default=str))
    lines += [
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _ensemble_lines(summary: dict[str, Any]) -> list[str]:
    """The ensemble (``summary["ensemble"]``, ``evaluation.members``) and test-time
    augmentation, when the run used them."""
    lines = []
    ens = summary.get("ensemble") or {}
    if ens.get("members", 1) > 1:
        spread = ens["spread"]
        parts = [
            f"{name} {fmt(spread[key]['min'])} / {fmt(spread[key]['mean'])} / "
            f"{fmt(spread[key]['max'])} (sd {fmt(spread[key]['sd'])})"
            for key, name in (("uf1", "UF1"), ("uar", "UAR"), ("accuracy", "accuracy"))
        ]
        lines.append(
            f"- **Ensemble**: {ens['members']} networks per fold (seeds differ), softmax "
            "averaged; the scores above are the ensemble's. Each member alone, min / mean / "
            "max: " + "; ".join(parts)
        )
    tta = ((summary.get("config") or {}).get("eval") or {}).get("tta", "none")
    if tta != "none":
        lines.append(
            f"- **Test-time augmentation**: {tta} (each held-out input's softmax averaged "
            "with its mirror's; flow: u negated)"
        )
    return lines


def _interval_note(summary: dict[str, Any]) -> list[str]:
    boot = summary.get("bootstrap") or {}
    if not summary.get("uf1_ci") or not boot:
        return []
    return [
        f"- **Intervals**: {100 * boot.get('confidence', 0.95):g} % percentile intervals of "
        f"a bootstrap over the {boot.get('n_subjects')} subjects ({boot.get('n_resamples')} "
        f"resamples, seed {boot.get('seed')}): subjects drawn with replacement, their "
        "predictions pooled and scored once"
    ]


def _fold_table(summary: dict[str, Any], folds: list[dict[str, Any]]) -> list[str]:
    if summary.get("protocol_name", "loso") == "loso":
        has_f1 = any("uf1" in f for f in folds)
        return md_table(
            ["fold", "subject", "n", "accuracy", *(["UF1"] if has_f1 else []), "warnings"],
            [
                [
                    f.get("fold", ""),
                    f.get("subject", ""),
                    f.get("n", ""),
                    fmt(f.get("accuracy")),
                    *([fmt(f.get("uf1"))] if has_f1 else []),
                    "; ".join(f.get("warnings", [])),
                ]
                for f in folds
            ],
        )
    return md_table(
        ["fold", "held out", "trained on", "tested on", "n", "accuracy", "UF1", "UAR"],
        [
            [
                f.get("fold", ""),
                f.get("subject", ""),
                "+".join(f.get("train_datasets", [])),
                "+".join(f.get("test_datasets", [])),
                f.get("n", ""),
                fmt(f.get("accuracy")),
                fmt(f.get("uf1")),
                fmt(f.get("uar")),
            ]
            for f in folds
        ],
    )


def _corpus_section(
    summary: dict[str, Any], predictions: pd.DataFrame, names: list[str]
) -> list[str]:
    per = (summary.get("per_corpus") or {}).get("datasets")
    if per is None:  # an older summary: the same function computes it
        cols = {"dataset", "subject", "fold", "y_true", "y_pred"}
        if not cols <= set(predictions.columns):
            return []
        per = score_predictions(predictions, names, n_resamples=0)["per_corpus"]["datasets"]
    if len(per) < 2:
        return []
    rows = [
        [
            d["dataset"],
            d["n"],
            d["n_subjects"],
            fmt_ci(d["accuracy"], d.get("accuracy_ci")),
            fmt_ci(d["uf1"], d.get("uf1_ci")),
            fmt_ci(d["uar"], d.get("uar_ci")),
        ]
        for d in per
    ]
    return [
        "## Per corpus",
        "",
        *md_table(["dataset", "n", "subjects", "accuracy", "UF1", "UAR"], rows),
        "",
    ]


def _published_section(summary: dict[str, Any], predictions: pd.DataFrame) -> list[str]:
    """This run beside the composite's published honest re-runs, when its setting is the
    composite's; nothing for a run on other corpora."""
    setting = report_setting(summary, predictions)
    reasons = composite_mismatch(setting)
    on_composite = sorted(str(setting.get("dataset", "")).split("+")) == sorted(COMPOSITE.datasets)
    title = f"## Compared with published re-runs ({COMPOSITE_LABEL})"
    if reasons:
        if not on_composite:
            return []
        return [title, "", "Not shown: " + "; ".join(reasons) + ".", ""]
    ci = summary.get("uf1_ci")
    rows = [
        [
            "this run (pooled)",
            fmt_ci(summary["accuracy"], summary.get("accuracy_ci")),
            fmt_ci(summary["uf1"], ci),
            fmt_ci(summary.get("uar"), summary.get("uar_ci")),
        ]
    ] + [
        [f"{name} ({COMPOSITE_LABEL})", "–", fmt(f1), "–"] for name, f1 in COMPOSITE_RERUNS.items()
    ]
    lines = [title, "", *md_table(["", "accuracy", "UF1", "UAR"], rows), ""]
    if ci:
        inside = [n for n, f1 in COMPOSITE_RERUNS.items() if ci[0] <= f1 <= ci[1]]
        lines.append(
            "Inside this run's UF1 interval (not told apart from it on these subjects): "
            + (", ".join(inside) if inside else "none")
            + ". To compare two of your own runs on the same samples, use `apexmer compare`."
        )
        lines.append("")
    return lines


def write_report(
    run_dir: Path,
    summary: dict[str, Any],
    predictions: pd.DataFrame,
    history: pd.DataFrame | None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write ``run_dir/report.md`` and its PNGs (see module doc for the inputs); return it."""
    run_dir = Path(run_dir)
    names = list(class_names) if class_names is not None else list(summary["classes"])
    figures = {
        "Confusion matrix": plot_confusion(summary["confusion"], names, run_dir / CONFUSION_PNG)
    }
    if summary.get("folds"):
        loso = summary.get("protocol_name", "loso") == "loso"
        figures["Accuracy per subject" if loso else "Accuracy per fold"] = plot_per_subject(
            summary["folds"], run_dir / SUBJECTS_PNG, "subject" if loso else "fold"
        )
    if history is not None and len(history):
        figures["Training curves"] = plot_curves(history, run_dir / CURVES_PNG)
    rel = {title: path.name for title, path in figures.items()}
    out = run_dir / "report.md"
    write_text(out, render_report(summary, predictions, names, rel))
    return out


def _ablation_setting(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": r["model"],
        "frame": r["frame"],
        "n_samples": r.get("n_samples"),
        "oracle": r.get("oracle"),
        **(r.get("setting") or {}),
    }


def write_ablation_table(rows: list[dict[str, Any]], out: Path) -> Path:
    """Markdown in the shape of the paper's Table 4, our cells beside theirs.

    ``rows``: one dict per run with ``model`` (registry name), ``frame`` (apex | mid),
    ``accuracy``, ``uf1``; optionally ``n_samples``, ``oracle`` and ``setting`` (a dict for
    ``paper.paper_mismatch``; the keys given are checked). Cells read "accuracy / UF1";
    an oracle cell is marked. Runs whose setting differs from the paper's are listed under
    the table with the reasons.
    """
    ours = {(r["model"], normalize_frame(r["frame"])): r for r in rows}
    header = ["frame"]
    for title in MODEL_TITLES.values():
        header += [f"{title} (ours)", f"{title} ({PAPER})"]
    body = []
    for frame, frame_title in FRAME_TITLES.items():
        cells = [frame_title]
        for model in MODEL_TITLES:
            r = ours.get((model, frame))
            cell = f"{fmt(r['accuracy'])} / {fmt(r['uf1'])}" if r else "–"
            cells.append(cell + (" (ORACLE)" if r and r.get("oracle") else ""))
            acc, f1 = TABLE4[(model, frame)]
            # The paper's cell stands beside ours only when our run matches its setting.
            comparable = r is not None and not paper_mismatch(_ablation_setting(r), require=False)
            cells.append(f"{fmt(acc)} / {fmt(f1)}" if comparable else "n/c")
        body.append(cells)
    lines = [
        "# Ablation: network x input frame (accuracy / UF1, pooled LOSO)",
        "",
        *md_table(header, body),
        "",
        f"{PAPER}: CASME II, {len(PAPER_SETTING.classes)} classes, "
        f"{PAPER_SETTING.n_samples} samples, LOSO. Non-apex = frame midway between onset "
        "and apex.",
    ]
    notes = []
    for r in rows:
        reasons = paper_mismatch(_ablation_setting(r), require=False)
        if reasons:
            notes.append(f"- {r['model']}, {r['frame']}: " + "; ".join(reasons))
    if notes:
        lines += [
            "",
            "n/c = not comparable: the paper's number is not shown beside a run whose "
            "setting differs from theirs:",
            *notes,
        ]
    write_text(out, "\n".join(lines) + "\n")
    return Path(out)
