"""Markdown report and PNG figures of one evaluation run; the paper's Table 4 side by side.

Inputs (written by the protocol runner):

``summary`` (dict), keys:
    accuracy, uf1, uar (floats, on predictions pooled over all folds); n_samples, n_folds;
    protocol (str, e.g. "LOSO, 26 folds, fixed 100 epochs, last epoch's model, predictions
    pooled over folds then scored"); config (dict, the resolved config); classes (list of
    names, label-index order); per_class (``metrics.per_class`` output); confusion (K x K
    nested list, rows true); folds (list of {fold, subject, n, accuracy, warnings: [str]},
    optional uf1); coding_version; version; oracle (bool); ensemble ({members, member_scores,
    spread}: ``evaluation.members``).
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

from apexmer.evaluation.metrics import per_fold_f1, per_group_metrics
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
from apexmer.fileio import atomic_path, write_text

ORACLE_LABEL = "ORACLE: epochs chosen on the held-out subject; not a valid estimate"
CONFUSION_PNG = "confusion.png"
SUBJECTS_PNG = "per_subject.png"
CURVES_PNG = "curves.png"


def fmt(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{float(x):.4f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in cells],
    ]


# ---------------------------------------------------------------- figures (matplotlib, Agg)


def new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # no pyplot, no global backend switch
    return fig


def save_figure(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def plot_confusion(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path
) -> Path:
    """Annotated count matrix, rows true, columns predicted."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = len(class_names)
    fig = new_figure(1.2 + 0.8 * k, 1.0 + 0.8 * k)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    half = cm.max() / 2
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > half else "black",
            )
    ax.set_title("Confusion matrix (pooled over folds)")
    return save_figure(fig, path)


def plot_per_subject(folds: Sequence[dict[str, Any]], path: Path) -> Path:
    """Bar chart of accuracy per held-out subject, with n on each bar."""
    names = [str(f.get("subject", f.get("fold"))) for f in folds]
    acc = [float(f["accuracy"]) for f in folds]
    fig = new_figure(max(4.0, 0.35 * len(names) + 1.5), 3.5)
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.bar(range(len(names)), acc, color="#4c72b0")
    for bar, f in zip(bars, folds, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() + 0.01,
            str(f.get("n", "")),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(names)), labels=names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per held-out subject (n above bars)")
    return save_figure(fig, path)


def plot_curves(history: pd.DataFrame, path: Path) -> Path:
    """Loss and train accuracy per epoch: one thin line per fold, the fold mean in bold."""
    metrics = [c for c in ("loss", "train_acc") if c in history.columns]
    fig = new_figure(5.0 * len(metrics), 3.5)
    for i, col in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        keys = [c for c in ("fold", "member") if c in history.columns]  # member: ensembles
        for _, g in history.groupby(keys, sort=True):
            g = g.sort_values("epoch")
            ax.plot(g["epoch"], g[col], color="gray", alpha=0.35, linewidth=0.8)
        mean = history.groupby("epoch", sort=True)[col].mean()
        ax.plot(mean.index, mean.values, color="black", linewidth=2.5, label="mean over folds")
        ax.set_xlabel("epoch")
        ax.set_ylabel(col)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("Training curves (thin: one fold each)")
    return save_figure(fig, path)


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
        f"- **Accuracy**: {fmt(summary['accuracy'])}",
        f"- **UF1 (pooled)**: {fmt(summary['uf1'])} — macro-F1 over all {len(names)} classes "
        "on the predictions of all folds pooled, then scored once",
        f"- **UAR**: {fmt(summary.get('uar'))} — mean recall over classes present",
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
    lines += ["", "## Per fold", ""]
    has_f1 = any("uf1" in f for f in folds)
    lines += md_table(
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
    lines += ["", *_corpus_section(predictions, len(names))]
    warnings = [
        f"{f.get('subject', f.get('fold'))}: {w}" for f in folds for w in f.get("warnings", [])
    ] + list(summary.get("warnings", []))
    lines += ["## Degenerate folds and warnings", ""]
    lines += [f"- {w}" for w in warnings] or ["None."]
    left_out = list(summary.get("data_problems", []))
    lines += ["", f"## Data problems ({len(left_out)} left out or reported)", ""]
    lines += [f"- {p}" for p in left_out] or ["None: every sample of the manifest was used."]
    lines += ["", *_paper_section(summary, predictions)]
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


def _corpus_section(predictions: pd.DataFrame, k: int) -> list[str]:
    cols = {"dataset", "subject", "y_true", "y_pred"}
    if not cols <= set(predictions.columns) or predictions["dataset"].nunique() < 2:
        return []
    groups = predictions["dataset"].astype(str) + "/" + predictions["subject"].astype(str)
    per = per_group_metrics(
        predictions["y_true"].to_numpy(), predictions["y_pred"].to_numpy(), groups.tolist(), k
    )
    rows = [
        [d["dataset"], d["n"], d["n_subjects"], fmt(d["accuracy"]), fmt(d["uf1"]), fmt(d["uar"])]
        for d in per["datasets"]
    ]
    return [
        "## Per corpus",
        "",
        *md_table(["dataset", "n", "subjects", "accuracy", "UF1", "UAR"], rows),
        "",
    ]


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
        figures["Accuracy per subject"] = plot_per_subject(summary["folds"], run_dir / SUBJECTS_PNG)
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
