"""PNG figures of evaluation runs (matplotlib's Agg canvas: no pyplot, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from apexmer.fileio import atomic_path


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


def plot_per_subject(
    folds: Sequence[dict[str, Any]], path: Path, held_out: str = "subject"
) -> Path:
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
    ax.set_title(f"Accuracy per held-out {held_out} (n above bars)")
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


def plot_intervals(
    runs: Sequence[dict[str, Any]], metrics: Sequence[str], titles: dict[str, str], path: Path
) -> Path:
    """One panel per metric: each run's value as a dot with its interval as a bar.
    ``runs``: dicts with ``name``, each metric and ``<metric>_ci`` ([lo, hi] or None)."""
    fig = new_figure(3.2 * len(metrics) + 0.5, 0.45 * len(runs) + 1.6)
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for j, run in enumerate(runs):
            ci = run.get(f"{m}_ci")
            if ci:
                ax.plot(ci, [j, j], color="#4c72b0", linewidth=3, alpha=0.6)
            ax.plot([run[m]], [j], "o", color="black")
        ax.set_yticks(range(len(runs)), labels=[r["name"] for r in runs] if i == 0 else [])
        ax.set_ylim(-0.6, len(runs) - 0.4)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(titles.get(m, m))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Runs compared: value and interval (bootstrap over subjects)", y=1.08)
    return save_figure(fig, path)
