"""Train the deployable model: all subjects, fixed epochs, one self-describing checkpoint.

LOSO estimates how well the recipe generalises; the model a user runs on new clips is
trained once more on every subject with the same config (seed from the config, last
epoch kept: no selection on any test data). With ``train.ensemble: K`` all K members go
into the one checkpoint, and ``eval.tta`` is recorded there for the Predictor.

The checkpoint records how its inputs were made (``preprocess``), so the Predictor makes
them the same way on a new clip. Flows made elsewhere (a manifest of STSTNet-style flow
images, no ``preprocess.json``) are allowed: the checkpoint then says so
(``flow_source: external``) and records the settings the Predictor will use: 8-bit flow
images (the public MEGC 2019 images, ``data manifest --corpus megc-flow``) are the
``ststnet`` flow style (``preprocess/flow.py``: the face box, no mask), so new clips get
their flow in that style; ``.npy`` flows made elsewhere get the config's
``preprocess.flow_style`` (apexmer's by default).

The checkpoint also records ``spotter``: the apex spotter a new clip gets
(``config.spot_method_of``: the paper's for the paper preset, motion for every other).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from apexmer import __version__
from apexmer.config import Config, config_to_dict, spot_method_of
from apexmer.data.sample import Sample
from apexmer.errors import DataError, NonFiniteTraining
from apexmer.fileio import write_text
from apexmer.preprocess.flow import FlowConfig
from apexmer.preprocess.pipeline import PreprocessConfig
from apexmer.spotting.apex import SpotConfig
from apexmer.training.checkpoint import save_checkpoint
from apexmer.training.dataset import load_manifest_data
from apexmer.training.inputs import check_model_input, input_metadata
from apexmer.training.members import ensemble_model, fit_ensemble

EpochFn = Callable[[dict], None]
PROBLEMS_NAME = "problems.txt"  # beside the checkpoint: the samples and rows left out
PREPROCESS_FIX = (
    "the checkpoint must record how its crops were made; build the cache with "
    "`apexmer preprocess`, which writes preprocess.json next to manifest.csv"
)


def read_preprocess_settings(manifest: str | Path) -> dict[str, Any]:
    """``preprocess.json`` beside the manifest (as ``preprocess_corpus`` writes it)."""
    path = Path(manifest).parent / "preprocess.json"
    if not path.is_file():
        raise DataError("no preprocess.json beside the manifest", file=path, fix=PREPROCESS_FIX)
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc})", file=path, fix=PREPROCESS_FIX) from None
    if not isinstance(settings, dict) or "preprocess" not in settings:
        raise DataError("has no 'preprocess' section", file=path, fix=PREPROCESS_FIX)
    return settings


def external_flow_style(samples: list[Sample], config: Config) -> str:
    """The flow style of flows made elsewhere: ``ststnet`` for 8-bit flow images (the public
    STSTNet/HTNet images' layout, the only 8-bit flow apexmer reads), else the config's."""
    paths = [s.flow_path for s in samples if s.flow_path is not None]
    if paths and all(Path(p).suffix.lower() != ".npy" for p in paths):
        return "ststnet"
    return config.preprocess.flow_style


def preprocess_provenance(
    manifest: str | Path, config: Config, samples: list[Sample] | None = None
) -> dict[str, Any]:
    """``{"preprocess", "preprocess_package_version"[, "flow_source"]}`` for the
    checkpoint: ``preprocess.json``'s, or for flow inputs without one (flows computed
    elsewhere, ``samples`` their manifest's) the settings the Predictor will use on new
    clips: apexmer's defaults with the config's spotter and the flows' style."""
    path = Path(manifest).parent / "preprocess.json"
    if config.data.input == "flow" and not path.is_file():
        style = external_flow_style(samples or [], config)
        settings = PreprocessConfig(
            spot=SpotConfig(method=spot_method_of(config)), flow=FlowConfig(style=style)
        )
        return {
            "preprocess": settings.to_dict(),
            "preprocess_package_version": None,
            "flow_source": "external: the training flows were not computed by apexmer; "
            f"new clips get apexmer's default preprocessing, flow style {style} (recorded)",
        }
    settings = read_preprocess_settings(manifest)
    out = {
        "preprocess": settings["preprocess"],
        "preprocess_package_version": settings.get("version"),
    }
    if config.data.input == "flow":
        out["flow_source"] = "apexmer preprocess"
    return out


def write_problems(out: str | Path, problems: list[str]) -> Path | None:
    """``out/problems.txt``, one left-out sample or row per line, when there are any (a
    stale one from an earlier run is removed). Returns its path, or None."""
    path = Path(out) / PROBLEMS_NAME
    if not problems:
        path.unlink(missing_ok=True)
        return None
    write_text(path, "".join(f"{p}\n" for p in problems))
    return path


def train_deployable(
    manifest: str | Path,
    config: Config,
    out: str | Path,
    *,
    on_epoch: EpochFn | None = None,
    allow_missing_classes: bool = False,
) -> dict[str, Any]:
    """Train on every sample of ``manifest``; write ``out/model.safetensors`` + ``model.json``,
    and ``out/problems.txt`` listing the samples left out (as ``loso``'s report does).

    A class left with no training sample is refused before training (such a model never
    predicts it) unless ``allow_missing_classes``. Returns the checkpoint metadata (with
    ``checkpoint`` set to the weights path and ``problems_file`` to the list, or None).
    """
    check_model_input(config)
    preprocess_provenance(manifest, config)  # a missing preprocess.json fails before loading
    data = load_manifest_data(manifest, config.data)
    provenance = preprocess_provenance(manifest, config, data.samples)
    if len(data.classes) < 2:
        raise DataError(
            f"only one class ({', '.join(data.classes)}) in the manifest",
            file=manifest,
            fix="a classifier needs at least two labels",
        )
    problems = [str(p) for p in data.problems]
    counts = data.labels.bincount(minlength=len(data.classes)).tolist()
    empty = [c for c, n in zip(data.classes, counts, strict=True) if n == 0]
    if empty and not allow_missing_classes:
        listed = write_problems(out, problems)
        where = f"; the {len(problems)} left out are listed in {listed}" if listed else ""
        raise DataError(
            f"no training sample left for class(es) {', '.join(empty)}{where}",
            file=manifest,
            fix="repair those samples' files, or pass --allow-missing-classes to train a "
            "model that never predicts them",
        )
    try:  # train.ensemble members (seeds engine.member_seed), packed by train.pack_folds
        members = fit_ensemble(
            config,
            data.inputs,
            data.labels,
            len(data.classes),
            seed=config.train.seed,
            on_epoch=on_epoch,
        )
    except NonFiniteTraining as exc:  # nothing is written
        raise exc.named(None, [s.key for s in data.samples]) from None
    metadata = {
        "architecture": config.model.name,
        "classes": list(data.classes),
        "num_classes": len(data.classes),
        "input_size": config.data.input_size,
        "mean": list(config.data.mean),
        "std": list(config.data.std),
        "frame": config.data.frame,
        "input": input_metadata(config.data),
        "ensemble": len(members),  # members averaged (softmax); 1: a single network
        "tta": config.eval.tta,  # the Predictor averages each input with its mirror
        **provenance,
        # the apex spotter new clips get (predict, serve); preprocess records the cache's
        "spotter": spot_method_of(config),
        "config": config_to_dict(config),
        "coding_version": data.coding_version,
        "package_version": __version__,
        "training_data": {
            "manifest": str(Path(manifest).absolute()),
            "n_samples": len(data.samples),
            "subjects": sorted(set(data.groups)),
            "class_counts": dict(zip(data.classes, counts, strict=True)),
            "data_digest": data.digest,
            "problems": problems,
            "classes_without_samples": empty,
        },
        "history": [
            {**({"member": m} if len(members) > 1 else {}), **row}
            for m, r in enumerate(members)
            for row in r.history
        ],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = save_checkpoint(ensemble_model(members).cpu(), metadata, out)
    listed = write_problems(path.parent, problems)
    return {**metadata, "checkpoint": str(path), "problems_file": str(listed) if listed else None}
