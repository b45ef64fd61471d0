"""Self-describing model checkpoints: weights and everything inference needs, in one file.

``MODEL_DIR/model.safetensors`` holds the state dict; its safetensors metadata (string to
string) holds one JSON document under the key ``apexmer``: format version, architecture,
class names in index order, input size, mean/std, the frame the network was trained on,
the input (kind, channels, normalisation; ``training/inputs.py``), the preprocessing
settings, the resolved training config, coding-sheet version, package version, training
history and creation time; ``ensemble`` (K members, their tensors under ``members.<k>.``:
``models.ensemble.Ensemble``) and ``tta`` (``eval.tta``). ``MODEL_DIR/model.json`` is the
same document, indented, for people. Loading reads tensors only (safetensors): nothing is
unpickled, no code runs.
"""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apexmer.config import DataConfig, EvalConfig, normalization_issue
from apexmer.errors import ConfigError, WeightsError
from apexmer.fileio import atomic_path, write_json
from apexmer.models.ensemble import Ensemble
from apexmer.models.registry import create_model, list_models
from apexmer.spotting.apex import SPOT_METHODS
from apexmer.training.inputs import IMAGE_CHANNELS, INPUT_KINDS, model_kwargs

FORMAT_VERSION = 1
METADATA_KEY = "apexmer"
WEIGHTS_NAME = "model.safetensors"
JSON_NAME = "model.json"
# Keys inference cannot do without; the rest is provenance.
REQUIRED_KEYS = (
    "format_version",
    "architecture",
    "classes",
    "num_classes",
    "input_size",
    "mean",
    "std",
    "frame",
    "input",  # {"kind", "channels", "normalization"}; filled in for older checkpoints
    "preprocess",
)
FIX_RETRAIN = "re-create it with `apexmer train --data CACHE/manifest.csv --out MODEL_DIR`"


def checkpoint_file(path: str | Path) -> Path:
    """``MODEL_DIR/model.safetensors`` for a folder, the path itself for a file."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise WeightsError(
            f"{path}: checkpoint not found. Fix: pass the folder written by "
            f"`apexmer train` or the {WEIGHTS_NAME} inside it"
        )
    return path


def validate_metadata(meta: dict[str, Any], source: str | Path = "<metadata>") -> dict[str, Any]:
    """Check the keys inference needs; raise WeightsError naming what is wrong."""
    if not isinstance(meta, dict):
        raise WeightsError(
            f"{source}: checkpoint metadata is a JSON {type(meta).__name__}, not a JSON "
            f"object. Fix: {FIX_RETRAIN}"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{source}: checkpoint format version {version!r} is not supported "
            f"(this apexmer reads version {FORMAT_VERSION}). Fix: use the apexmer "
            f"version that wrote it (it says {meta.get('package_version')!r}), "
            f"or {FIX_RETRAIN}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise WeightsError(
            f"{source}: checkpoint metadata lacks {', '.join(missing)}. Fix: {FIX_RETRAIN}"
        )
    check_metadata_values(meta, source)
    if len(meta["classes"]) != meta["num_classes"]:
        raise WeightsError(
            f"{source}: {len(meta['classes'])} class names but num_classes="
            f"{meta['num_classes']}. Fix: {FIX_RETRAIN}"
        )
    entry = meta["input"]
    if not (
        isinstance(entry, dict)
        and entry.get("kind") in INPUT_KINDS
        and isinstance(entry.get("channels"), list)
        and entry["channels"]
    ):
        raise WeightsError(
            f"{source}: input {entry!r} is not one this apexmer knows (a kind of "
            f"{', '.join(INPUT_KINDS)} with its channels). Fix: upgrade apexmer, or {FIX_RETRAIN}"
        )
    if meta["architecture"] not in list_models():
        raise WeightsError(
            f"{source}: unknown architecture {meta['architecture']!r}; this "
            f"apexmer knows {', '.join(list_models())}. Fix: upgrade apexmer"
        )
    return meta


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata_values(meta: dict[str, Any], source: str | Path = "<metadata>") -> None:
    """Types and ranges of the values inference uses, so that metadata which parses but is
    wrong fails here in one line, never later as a traceback or NaN confidences."""
    from apexmer.preprocess.pipeline import PreprocessConfig

    def bad(key: str, want: str) -> WeightsError:
        got = json.dumps(meta[key], default=str)
        got = got if len(got) <= 60 else got[:57] + "..."
        return WeightsError(
            f"{source}: checkpoint metadata {key} must be {want} (it is {got}). Fix: {FIX_RETRAIN}"
        )

    classes = meta["classes"]
    if not (
        isinstance(classes, list)
        and classes
        and all(isinstance(c, str) and c for c in classes)
        and len(set(classes)) == len(classes)
    ):
        raise bad("classes", "a list of distinct class names (strings)")
    num = meta["num_classes"]
    if not (isinstance(num, int) and not isinstance(num, bool) and num == len(classes)):
        raise bad("num_classes", f"the integer {len(classes)} (the number of classes)")
    size = meta["input_size"]
    if not (isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 1024):
        raise bad("input_size", "an integer from 16 to 1024 (pixels)")
    for key in ("mean", "std"):
        values = meta[key]
        if not (isinstance(values, list) and len(values) == 3 and all(map(_number, values))):
            raise bad(key, "a list of 3 numbers (R, G, B)")
    issue = normalization_issue(meta["mean"], meta["std"])
    if issue is not None:  # in float32, the dtype the inputs are normalised in
        raise WeightsError(f"{source}: checkpoint metadata {issue}. Fix: {FIX_RETRAIN}")
    frames = typing.get_args(DataConfig.model_fields["frame"].annotation)
    if meta["frame"] not in frames:
        raise bad("frame", f"one of {', '.join(frames)}")
    if not isinstance(meta["architecture"], str):
        raise bad("architecture", "a model name (a string)")
    if not isinstance(meta["preprocess"], dict):
        raise bad("preprocess", "a JSON object of preprocessing settings")
    # Optional keys that inference and the service still read: right JSON types if present.
    for key, kind, want in (
        ("config", dict, "a JSON object (the training config)"),
        ("history", list, "a list of epoch records"),
        ("training_data", dict, "a JSON object"),
    ):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise bad(key, want)
    members = meta.get("ensemble", 1)
    if not (isinstance(members, int) and not isinstance(members, bool) and members >= 1):
        raise bad("ensemble", "a positive integer (the number of members)")
    tta = typing.get_args(EvalConfig.model_fields["tta"].annotation)
    if meta.get("tta", "none") not in tta:
        raise bad("tta", f"one of {', '.join(tta)}")
    if meta.get("spotter") is not None and meta["spotter"] not in SPOT_METHODS:
        raise bad("spotter", f"one of {', '.join(SPOT_METHODS)} (the apex spotter)")
    for part in ("data", "train"):
        if not isinstance((meta.get("config") or {}).get(part, {}), dict):
            raise bad("config", f"a training config whose {part!r} is a JSON object")
    try:
        PreprocessConfig.from_dict(meta["preprocess"])
    except ConfigError as exc:  # e.g. a landmark backend not installed: its own fix
        fix = "" if "Fix:" in str(exc) else f" Fix: {FIX_RETRAIN}"
        raise WeightsError(f"{source}: checkpoint metadata preprocess: {exc}{fix}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise bad("preprocess", f"valid preprocessing settings ({first})") from None


def non_finite_tensor(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first float tensor holding NaN or inf, or None."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(t.isfinite().all()):
            return name
    return None


def save_checkpoint(model: nn.Module, metadata: dict[str, Any], path: str | Path) -> Path:
    """Write ``model`` and ``metadata`` to ``path`` (a folder, or a ``.safetensors`` file) and
    ``model.json`` beside it; both atomically. Returns the weights file."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / WEIGHTS_NAME
    meta = validate_metadata({"format_version": FORMAT_VERSION, **metadata}, path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    bad = non_finite_tensor(tensors)
    if bad is not None:
        raise WeightsError(
            f"{path}: not written: weight {bad} holds NaN or inf. Fix: lower optim.lr and "
            "train again"
        )
    document = json.dumps(meta, default=str)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", METADATA_KEY: document})
    write_json(path.with_name(JSON_NAME), meta)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata document, without loading the weights."""
    from safetensors import SafetensorError, safe_open

    file = checkpoint_file(path)
    try:
        with safe_open(str(file), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError) as exc:
        raise WeightsError(
            f"{file}: not a readable safetensors file ({exc}); it may be "
            f"truncated or corrupt. Fix: copy it again, or {FIX_RETRAIN}"
        ) from None
    if raw is None:
        raise WeightsError(
            f"{file}: a safetensors file without apexmer metadata (plain "
            "weights?). Fix: load plain weights with `--set model.weights=...` "
            f"for training, or {FIX_RETRAIN}"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WeightsError(
            f"{file}: its metadata is not valid JSON ({exc}). Fix: {FIX_RETRAIN}"
        ) from None
    return validate_metadata(with_legacy_input(meta), file)


def with_legacy_input(meta: Any) -> Any:
    """Checkpoints written before the input registry have no ``input`` key: their input is
    their training config's ``data.input`` (frame or diff: RGB images), else ``frame``."""
    if not isinstance(meta, dict) or "input" in meta:
        return meta
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    kind = data.get("input", "frame")
    if kind not in ("frame", "diff"):  # flow came with the registry, and with this key
        return meta
    entry = INPUT_KINDS[kind]
    return {
        **meta,
        "input": {
            "kind": kind,
            "channels": list(IMAGE_CHANNELS),
            "normalization": entry.normalization,
        },
    }


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode on device, metadata)`` from a checkpoint folder or file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = checkpoint_file(path)
    meta = read_metadata(file)
    try:
        state = load_file(str(file), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise WeightsError(
            f"{file}: weights cannot be read ({exc}). Fix: copy the file again, or {FIX_RETRAIN}"
        ) from None
    bad = non_finite_tensor(state)
    if bad is not None:
        raise WeightsError(
            f"{file}: weight {bad} holds NaN or inf; such a model answers NaN. Fix: {FIX_RETRAIN}"
        )
    kwargs = model_kwargs(
        meta["architecture"], len(meta["input"]["channels"]), int(meta["input_size"])
    )
    members = [
        create_model(meta["architecture"], num_classes=int(meta["num_classes"]), **kwargs)
        for _ in range(meta.get("ensemble", 1))
    ]
    model = members[0] if len(members) == 1 else Ensemble(members)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(
            f"{file}: weights do not fit {meta.get('ensemble', 1)} x {meta['architecture']} "
            f"with {meta['num_classes']} classes ({first}). Fix: {FIX_RETRAIN}"
        ) from None
    return model.to(device).eval(), meta
