"""The paper's Table 4 from our own runs: three networks x apex / non-apex (mid) frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apexmer.config import Config
from apexmer.errors import ConfigError
from apexmer.evaluation.protocol import ProgressFn, run_loso
from apexmer.evaluation.report import write_ablation_table
from apexmer.fileio import write_json

ABLATION_MODELS = ("resnet50", "resnext50_32x4d", "seresnext50_32x4d")
ABLATION_FRAMES = ("apex", "mid")


def run_ablation(
    manifest: str | Path,
    config: Config,
    out: str | Path,
    *,
    models: tuple[str, ...] = ABLATION_MODELS,
    frames: tuple[str, ...] = ABLATION_FRAMES,
    executor: str = "local",
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> list[dict[str, Any]]:
    """One LOSO run per (model, frame) in ``out/<model>_<frame>/``; each resumes on its own."""
    out = Path(out)
    if config.model.weights and len(set(models)) > 1:
        raise ConfigError(
            f"model.weights={config.model.weights} cannot fit {len(set(models))} different "
            "networks. Fix: run `apexmer loso --frame apex|mid` per network with its own "
            "--set model.weights=..., or pass --models with one network"
        )
    rows = []
    for frame in frames:
        for model in models:
            cfg = config.model_copy(deep=True)
            cfg.model.name = model
            cfg.data.frame = frame
            run_dir = out / f"{model}_{frame}"
            if progress:
                progress({"event": "run", "model": model, "frame": frame, "dir": str(run_dir)})
            summary = run_loso(
                manifest, cfg, run_dir, executor=executor, workers=workers, progress=progress
            )
            rows.append(
                {
                    "model": model,
                    "frame": frame,
                    "accuracy": summary["accuracy"],
                    "uf1": summary["uf1"],
                    "uar": summary["uar"],
                    "n_samples": summary["n_samples"],
                    "run": str(run_dir),
                    "oracle": summary["oracle"],
                    "config": summary["config"],
                    "coding_version": summary["coding_version"],
                    "setting": summary["setting"],
                }
            )
    write_json(out / "ablation.json", rows)
    write_ablation_table(rows, out / "ablation.md")
    return rows
