"""Typed, validated experiment configuration; YAML presets; dotted overrides.

A preset is a YAML file under ``src/apexmer/configs/`` (``paper``, ``demo``) or any path.
``load_config("paper", ["train.epochs=5"])`` gives a validated ``Config``; unknown keys and
bad values raise ``ConfigError`` naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from apexmer.errors import ConfigError
from apexmer.preprocess.flow import DEFAULT_FLOW_STYLE, FlowStyle
from apexmer.spotting.apex import SpotMethod, default_spot_method

PRESET_DIR = Path(__file__).parent / "configs"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalization_issue(mean: Any, std: Any) -> str | None:
    """Why ``(x - mean) / std`` of x in [0, 1] is not finite when computed in float32, as
    every batch is, or None. Checked in float32, not float64: a denormal std (1e-40) is not
    zero in float64 but its reciprocal is inf in float32, and every probability NaN."""
    top = float(np.finfo(np.float32).max)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # Range first, in float64: casts round values just past float32's largest to inf
        # (numpy) or to the largest (torch); either way they are not float32 numbers.
        m64, s64 = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if not (np.abs(m64) <= top).all():
            return f"mean {list(mean)} is not a finite float32 number"
        if not (np.abs(s64) <= top).all():
            return f"std {list(std)} is not a finite float32 number"
        m, s = m64.astype(np.float32), s64.astype(np.float32)
        tiny = np.finfo(np.float32).tiny
        if not (np.isfinite(s).all() and (s >= tiny).all()):
            return (
                f"std {list(std)} must be finite and at least {tiny:.3g} in float32 (a zero, "
                "negative or denormal std gives inf or NaN inputs)"
            )
        x = np.array([[0.0], [1.0]], dtype=np.float32)
        if not np.isfinite((x - m) / s).all():
            return f"mean {list(mean)} / std {list(std)} overflow float32 on inputs in [0, 1]"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


FlowChannel = Literal["u", "v", "strain", "magnitude"]


class DataConfig(_Strict):
    frame: Literal["apex", "mid", "onset"] = "apex"  # mid = the paper's "non-apex" frame
    # What the network sees (training/inputs.py defines each kind):
    # "frame": the chosen frame's crop (the paper). "diff": that crop minus the onset crop
    # (METHOD.md section 9). "flow": the onset->frame optical flow (METHOD.md section 11),
    # from the manifest's flow_path (flow_mid_path for frame=mid) or, on a new clip, computed.
    input: Literal["frame", "diff", "flow"] = "frame"
    # flow only: which flow channels, in this order; the network's in_chans follows.
    # Each is min-max scaled to [0, 1] per sample and channel after augmentation (the
    # STSTNet representation; the only scaling that 8-bit flow images, already min-max
    # scaled, share with computed flows). magnitude needs .npy flows.
    flow_channels: tuple[FlowChannel, ...] = ("u", "v", "strain")
    input_size: int = Field(224, ge=16, le=1024)
    # frame and diff only: RGB, applied after /255 (flow has its own min-max scaling)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @field_validator("flow_channels")
    @classmethod
    def _flow_channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("flow_channels must name at least one of u, v, strain, magnitude")
        if len(set(v)) != len(v):
            raise ValueError(f"flow_channels {list(v)} repeats a channel")
        return v

    @model_validator(mode="after")
    def _normalization(self) -> DataConfig:
        issue = normalization_issue(self.mean, self.std)
        if issue is not None:
            raise ValueError(f"data.{issue}")
        return self

    @model_validator(mode="after")
    def _flow_frame(self) -> DataConfig:
        if self.input == "flow" and self.frame == "onset":
            raise ValueError(
                "input flow is the motion from the onset to data.frame; use frame apex or mid"
            )
        return self


class ModelConfig(_Strict):
    name: str = "seresnext50_32x4d"
    weights: str | None = None  # local ImageNet .pth/.safetensors


class LossConfig(_Strict):
    name: Literal["focal", "cross_entropy"] = "focal"
    gamma: float = Field(2.0, ge=0.0)  # open in the paper; Lin et al.'s 2
    # balanced: 1 / n_k of each fold's training set; sqrt_balanced: 1 / sqrt(n_k), softer
    alpha: Literal["none", "balanced", "sqrt_balanced"] | list[float] = "none"


class OptimConfig(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)  # sgd only


class AugmentConfig(_Strict):
    # Applied per input kind (training/inputs.py): flow has no colour, so no grayscale; its
    # flips negate u and its rotations turn the (u, v) vectors with the grid.
    grayscale_p: float = Field(0.2, ge=0, le=1)
    hflip_p: float = Field(0.5, ge=0, le=1)
    rotation_deg: float = Field(15.0, ge=0, le=180)
    rotation_p: float = Field(1.0, ge=0, le=1)
    # For a practitioner's clip (training/augment.py, issue 17): a face box a little
    # tighter/looser or off centre, a softer image, noise in still skin. Flow-aware (a zoom
    # scales u and v with the grid). All off (0) until the proxy benchmark ranks them.
    scale: float = Field(0.0, ge=0, lt=1)  # zoom in [1 - scale, 1 + scale]
    scale_p: float = Field(0.5, ge=0, le=1)
    translate: float = Field(0.0, ge=0, lt=0.5)  # shift, fraction of the side
    translate_p: float = Field(0.5, ge=0, le=1)
    blur: float = Field(0.0, ge=0)  # Gaussian sigma up to this many pixels
    blur_p: float = Field(0.5, ge=0, le=1)
    still_noise: float = Field(0.0, ge=0)  # flow: times the u/v std, where nothing moves
    still_noise_p: float = Field(0.5, ge=0, le=1)


class PreprocessSection(_Strict):
    # What `apexmer preprocess --config` takes from a preset (its other settings are
    # options of that command). spot_method: the apex spotter for clips without a coded
    # apex; None = spotting.apex.default_spot_method(name) (the paper's for the paper
    # preset, motion otherwise). flow_style: which crops the flow is computed between
    # (preprocess/flow.py: apexmer's aligned masked crops, or the face box of the public
    # STSTNet/HTNet flow images).
    spot_method: SpotMethod | None = None
    flow_style: FlowStyle = DEFAULT_FLOW_STYLE


class TrainConfig(_Strict):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(2, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    seed: int = 0
    # torch intra-op threads per fold. oneDNN's sums depend on the thread count, so it is
    # fixed (1) by default: a fold then gives the same numbers under every executor.
    # None = torch's default (faster on one long fold, not bit-identical across executors).
    threads: int | None = Field(1, ge=1)
    channels_last: bool = False
    amp: Literal["none", "bf16"] = "none"
    device: str = "cpu"
    # Networks (folds x ensemble members) trained together as one packed network
    # (training/packed.py); 1 = off.
    pack_folds: int = Field(1, ge=1)
    # Members per model: K networks with different seeds (weights, batch order,
    # augmentation; engine.member_seed), their softmax probabilities averaged. 1 = off.
    ensemble: int = Field(1, ge=1, le=64)
    compile: bool = False  # torch.compile the training forward
    # CUDA only: cuDNN times each convolution shape once and keeps the fastest algorithm.
    cudnn_benchmark: bool = True
    # Packed folds: capture the full-pack training step as a CUDA graph and replay it
    # (training/packed.py). Off until measured on a GPU (bench/gpu_suite.sh).
    cuda_graphs: bool = False


class EvalConfig(_Strict):
    # loso: one fold per subject; lodo: leave one dataset out; cross: train on
    # train_datasets, test on test_datasets (evaluation/splits.py, METHOD.md section 14).
    protocol: Literal["loso", "lodo", "cross"] = "loso"
    datasets: list[str] = []  # loso / lodo over these corpora only (empty: all)
    train_datasets: list[str] = []  # cross only
    test_datasets: list[str] = []  # cross only
    both_ways: bool = False  # cross only: add the reverse fold (test -> train)
    # Choosing the epoch on the held-out subject inflates scores (METHOD.md section 10).
    # Off by default; when on, every output is labelled ORACLE.
    oracle: bool = False
    # Test-time augmentation: hflip averages the softmax of each input and of its mirror
    # (flow: u negated; training/augment.hflip). Used by LOSO, train/predict and serve.
    tta: Literal["none", "hflip"] = "none"
    # Confidence intervals: bootstrap over subjects (evaluation/bootstrap.py); 0 = none.
    # Scoring only: changing these rescores a finished run without retraining it.
    bootstrap: int = Field(2000, ge=0)
    bootstrap_seed: int = 0
    confidence: float = Field(0.95, gt=0, lt=1)

    @model_validator(mode="after")
    def _protocol_keys(self) -> EvalConfig:
        if self.protocol == "cross":
            if not self.train_datasets or not self.test_datasets:
                raise ValueError(
                    "protocol cross needs train_datasets and test_datasets, e.g. "
                    "--train-datasets casme2 --test-datasets samm"
                )
            if self.datasets:
                raise ValueError(
                    "datasets selects the corpora of loso/lodo; cross uses train_datasets "
                    "and test_datasets"
                )
            both = sorted(set(self.train_datasets) & set(self.test_datasets))
            if both:
                raise ValueError(f"train_datasets and test_datasets both name {both}")
        else:
            if self.train_datasets or self.test_datasets or self.both_ways:
                raise ValueError(
                    f"train_datasets, test_datasets and both_ways belong to protocol cross, "
                    f"not {self.protocol}; pass --protocol cross, or --datasets to choose "
                    f"the corpora of {self.protocol}"
                )
        if self.bootstrap and self.bootstrap < 100:
            raise ValueError(
                f"bootstrap {self.bootstrap} resamples give unstable interval ends; use "
                "0 (no intervals) or at least 100 (default 2000)"
            )
        return self


class Config(_Strict):
    name: str = "custom"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    augment: AugmentConfig = AugmentConfig()
    preprocess: PreprocessSection = PreprocessSection()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be empty")
        return v


def spot_method_of(config: Config) -> SpotMethod:
    """The apex spotter a config's preprocessing (and its model, on new clips) uses."""
    return config.preprocess.spot_method or default_spot_method(config.name)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(preset_or_path: str | Path) -> dict[str, Any]:
    path = Path(preset_or_path)
    # A YAML file wins; otherwise a bare name is a preset, even when a folder of that name
    # exists (``apexmer demo --out demo`` makes one beside the demo preset's name).
    if not path.is_file() and not path.suffix and len(path.parts) == 1:
        path = PRESET_DIR / f"{preset_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"unknown preset {preset_or_path!r}; presets: "
                f"{', '.join(list_presets())}, or pass a YAML file path"
            )
    if not path.is_file():
        raise ConfigError(
            f"{path}: config file not found; pass a preset name "
            f"({', '.join(list_presets())}) or an existing YAML file"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to a nested dict, in place."""
    if "=" not in override:
        raise ConfigError(
            f"override {override!r} must look like section.key=value, e.g. train.epochs=5"
        )
    key, raw = override.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {override!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = value


def build_config(data: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"{loc}: {err['msg']}")
        raise ConfigError(f"{source}: invalid config: " + "; ".join(lines)) from None


def load_config(
    preset_or_path: str | Path = "paper", overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a preset or YAML file, apply dotted overrides, validate."""
    data = _read_yaml(preset_or_path)
    for override in overrides:
        apply_override(data, override)
    return build_config(data, source=str(preset_or_path))


def config_to_dict(config: Config) -> dict[str, Any]:
    return config.model_dump(mode="json")
