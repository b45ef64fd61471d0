"""How well the spotter finds the human-coded apex: per-clip errors and summary scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from apexmer.data.frames import open_frames
from apexmer.data.sample import Sample, SampleSet
from apexmer.errors import ApexmerError
from apexmer.face.landmarks import LandmarkDetector
from apexmer.face.pool import map_samples
from apexmer.fileio import atomic_path
from apexmer.spotting.apex import SpotConfig, spot_clip


def _spot_task(sample: Sample, detector: LandmarkDetector, config: SpotConfig) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": sample.key,
        "onset": sample.onset,
        "offset": sample.offset,
        "labelled": sample.apex,
    }
    if sample.extra.get("apex_outside"):  # kept by the reader, but no truth to score
        problem = "coded apex outside onset..offset (a coding error): not scored"
        return {**row, "spotted": None, "error": None, "problem": problem}
    try:
        if sample.frames is None:
            raise ApexmerError("sample has no frames location. Fix: pass --root")
        with open_frames(sample.frames) as src:
            res = spot_clip(src, sample.onset, sample.offset, detector, config)
    except (ApexmerError, ValueError, OSError, cv2.error) as exc:
        return {**row, "spotted": None, "error": None, "problem": str(exc)}
    return {**row, "spotted": res.apex, "error": res.apex - sample.apex, "problem": ""}


def evaluate_spotting(
    sample_set: SampleSet,
    config: SpotConfig = SpotConfig(),
    *,
    detector: str = "dlib",
    workers: int = 1,
) -> pd.DataFrame:
    """Spot every sample that has a labelled apex; one row per clip (signed error in
    frames, or the problem that stopped it)."""
    labelled = [s for s in sample_set.samples if s.apex is not None]
    rows = list(map_samples(_spot_task, labelled, detector, workers, config=config))
    columns = ["key", "onset", "offset", "labelled", "spotted", "error", "problem"]
    return pd.DataFrame(rows, columns=columns).sort_values("key").reset_index(drop=True)


def spotting_scores(errors: np.ndarray | list[float]) -> dict[str, float | int]:
    """``{"n", "mae", "median", "within_1", "within_5", "within_10"}`` of signed errors
    (frames); the median is of absolute errors; shares are fractions (None when n is 0)."""
    err = np.abs(np.asarray([e for e in errors if e is not None and not pd.isna(e)], dtype=float))
    if err.size == 0:  # None, not NaN: the scores are printed as JSON
        return {
            "n": 0,
            "mae": None,
            "median": None,
            "within_1": None,
            "within_5": None,
            "within_10": None,
        }
    return {
        "n": int(err.size),
        "mae": float(err.mean()),
        "median": float(np.median(err)),
        "within_1": float((err <= 1).mean()),
        "within_5": float((err <= 5).mean()),
        "within_10": float((err <= 10).mean()),
    }


def plot_spotting_errors(table: pd.DataFrame, path: str | Path) -> Path:
    """Bar chart of the signed error per clip (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    done = table.dropna(subset=["error"])
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(done) + 2), 3.5))
    colors = [
        "tab:green" if abs(e) <= 1 else "tab:orange" if abs(e) <= 5 else "tab:red"
        for e in done["error"]
    ]
    ax.bar(range(len(done)), done["error"], color=colors)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("clip")
    ax.set_ylabel("spotted - labelled apex (frames)")
    scores = spotting_scores(done["error"].to_list())
    ax.set_title(
        f"apex spotting: MAE {scores['mae']:.2f} frames, "
        f"{100 * scores['within_1']:.0f}% within 1 frame (n={scores['n']})"
    )
    fig.tight_layout()
    with atomic_path(path.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path.with_suffix(".png")
