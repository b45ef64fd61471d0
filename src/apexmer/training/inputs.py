"""What the network sees: ONE registry of input kinds for training, LOSO, fold packing,
the deployable model, checkpoints and the Predictor.

An ``InputKind`` (``get_input(name)``; names in ``INPUT_KINDS``) defines

- its channels (``channels(data)``) and the dtype of the tensor held in memory
  (``dtype``): images uint8 RGB ``(3, S, S)``; flow float16 ``(C, S, S)``, signed;
- how it is built from a new clip (``from_clip``: a ``ClipResult``'s crops and flows, the
  Predictor's path) and loaded from a manifest sample (``from_sample``: crop or flow files,
  training's path). Both end in the same function, so one clip gives one array either way;
- its augmentation policy (``augment_config``) and normalisation (``normalize``).

``prepare_batch`` turns a stored batch into the network's input (device, float, augment
when training, normalise); ``engine``, ``packed`` and the Predictor all call it.

Kinds:

- ``frame``: the ``data.frame`` crop (the paper). /255, then ``data.mean``/``std``.
  Augmentation: grayscale, horizontal flip, rotation; uncovered corners black (the masked
  background).
- ``diff``: ``128 + 2 (frame - onset)`` (METHOD.md section 9). As ``frame``, corners
  mid-grey (no motion).
- ``flow``: the onset->``data.frame`` optical flow, channels ``data.flow_channels`` of
  (u, v, strain, magnitude); u along x (columns, right), v along y (rows, DOWN), pixels.
  Stored signed, in pixels of the network's grid (u, v and magnitude scaled by the resize
  factor; strain is a ratio of pixels and does not change).

Flow normalisation: per sample and per channel, min-max to [0, 1], AFTER augmentation.
Why: flows reach apexmer in two forms, float ``.npy`` from ``apexmer preprocess`` and 8-bit
(u, v, strain) images as STSTNet/HTNet distribute them, which are already min-max scaled
per sample and channel (their absolute scale is lost). Min-max scaling is the one
normalisation under which both forms give the same numbers for the same flow (it undoes
any per-channel offset and positive gain), it is what those networks were published with,
and the Predictor applies it to the flow it computes on a new clip. After augmentation,
because a flip negates u and a rotation mixes u and v: they must act on signed flow.

Flow images: R, G, B = u, v, strain (OpenCV reads them as B, G, R; ``read_flow_file``
reverses). Their zero motion is unknown after min-max scaling; u and v are centred by their
per-sample median, the motion of most of the face (still skin and background), so a flip's
negation and a rotation act about (approximately) zero motion. u and v keep their
separate min-max gains, so a rotation mixes them in slightly different units (small at the
+-15 degrees used). Magnitude cannot be recovered from them (u and v have lost their common
scale): asking for it is an error.

Flow augmentation (training only): a horizontal flip mirrors the field and negates u; a
rotation moves the grid and turns every (u, v) vector by the same angle (positive angle =
counter-clockwise on the screen, as ``torchvision``'s rotate); strain and magnitude only
move with the grid; no grayscale (flow has no colour); uncovered corners get zero motion.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from apexmer.config import Config, DataConfig
from apexmer.data.arrays import non_finite
from apexmer.data.crops import frame_path, load_crop, prepare_crop
from apexmer.data.flow_images import read_flow_image
from apexmer.data.sample import Sample
from apexmer.errors import ConfigError, DataError, FrameError
from apexmer.models.registry import create_model, model_info
from apexmer.preprocess.flow import FLOW_CHANNELS
from apexmer.preprocess.pipeline import ClipResult
from apexmer.training.augment import AugmentConfig as BatchAugmentConfig
from apexmer.training.augment import augment_batch, hflip

IMAGE_CHANNELS = ("red", "green", "blue")
DIFF_GAIN = 2.0  # difference images: 128 + 2 * (frame - onset), clipped to 0..255
# Channels of an 8-bit flow image (R, G, B), each min-max scaled to 0..255 by its maker.
FLOW_IMAGE_CHANNELS = ("u", "v", "strain")
FLOW_FIELDS = {"apex": "flow_path", "mid": "flow_mid_path"}


def frame_difference(frame: np.ndarray, onset: np.ndarray, gain: float = DIFF_GAIN) -> np.ndarray:
    """uint8 difference image ``128 + gain * (frame - onset)``; mid-grey means no motion."""
    diff = frame.astype(np.float32) - onset.astype(np.float32)
    return np.clip(np.rint(128.0 + gain * diff), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- flow arrays


def flow_to_input(
    features: np.ndarray, names: tuple[str, ...], channels: tuple[str, ...], size: int
) -> np.ndarray:
    """Flow features ``(H, W, n)`` named ``names`` -> the stored input: ``channels`` of them,
    resized to ``size``, ``(C, size, size)`` float16. u, v and magnitude are rescaled to
    pixels of the new grid. Training (files) and the Predictor (new clips) both end here."""
    missing = [c for c in channels if c not in names]
    if missing:
        raise ValueError(f"flow has channels {', '.join(names)}; missing {', '.join(missing)}")
    flow = np.asarray(features, dtype=np.float32)
    h, w = flow.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if h > size else cv2.INTER_LINEAR
        flow = cv2.resize(flow, (size, size), interpolation=interp).reshape(size, size, -1)
    # x motion scales with the width, y motion with the height; magnitude with both (exact
    # for square crops, which is what apexmer and the published flow images have).
    scale = {"u": size / w, "v": size / h, "magnitude": size / np.sqrt(h * w)}
    picked = [flow[:, :, names.index(c)] * scale.get(c, 1.0) for c in channels]
    with np.errstate(over="ignore"):  # beyond float16's range: inf, which callers refuse
        return np.stack(picked).astype(np.float16)  # (C, size, size)


def read_flow_file(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """A flow file as ``(features (H, W, n) float32, channel names)``.

    ``.npy``: float (H, W, 2|3|4) in ``FLOW_CHANNELS`` order (``apexmer preprocess`` writes
    float16 (S, S, 4)), signed pixels. An image: 8-bit (u, v, strain) in R, G, B, each
    min-max scaled (STSTNet/HTNet); returned /255 with u and v centred by their median.
    Raises FrameError for a missing or unreadable file, or one whose values cannot be a
    flow (``read_flow_npy``, ``read_flow_image``).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        flow = read_flow_npy(path)
        return flow, FLOW_CHANNELS[: flow.shape[2]]
    # BGR -> (u, v, strain); read_flow_image refuses grayscale, alpha and 16-bit files.
    rgb = read_flow_image(path)[:, :, ::-1].astype(np.float32) / 255.0
    for c in (0, 1):  # zero motion = the median motion (most of the face does not move)
        rgb[:, :, c] -= np.median(rgb[:, :, c])
    return np.ascontiguousarray(rgb), FLOW_IMAGE_CHANNELS


def read_flow_npy(path: Path) -> np.ndarray:
    """A ``.npy`` flow file as float32 ``(H, W, 2-4)``, checked once here: a missing, empty,
    cut short or pickled file, another shape or dtype, or a NaN/inf value (here or after
    float32 rounding) raises FrameError naming the file."""
    fix = "re-run `apexmer preprocess` (or rewrite this flow file), or delete its manifest row"
    if not path.is_file():
        raise FrameError("flow file not found", file=path, fix="check flow_path")
    if path.stat().st_size == 0:
        raise FrameError("flow file is empty (0 bytes)", file=path, fix=fix)
    try:
        flow = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FrameError(f"flow file cannot be read ({exc})", file=path, fix=fix) from None
    if not isinstance(flow, np.ndarray):  # an .npz archive saved as .npy
        raise FrameError("flow file is not one array", file=path, fix=fix)
    if (
        flow.ndim != 3
        or flow.shape[2] not in (2, 3, 4)
        or min(flow.shape[:2]) < 1
        or flow.dtype.kind != "f"
    ):
        raise FrameError(
            f"flow array has dtype {flow.dtype} and shape {flow.shape}; expected float "
            f"(H, W, 2-4) with channels {', '.join(FLOW_CHANNELS)}",
            file=path,
            fix=fix,
        )
    with np.errstate(over="ignore"):  # a float64 beyond float32's range: inf, refused below
        flow = flow.astype(np.float32)
    bad = non_finite(flow)
    if bad is not None:
        raise FrameError(f"flow array has {bad} (as float32)", file=path, fix=fix)
    return flow


def load_flow(path: Path, channels: tuple[str, ...], size: int) -> np.ndarray:
    """One flow file as the stored input ``(C, size, size)`` float16; a value that does not
    fit float16 (beyond +-65504 px after resizing) raises FrameError naming the file."""
    features, names = read_flow_file(path)
    missing = [c for c in channels if c not in names]
    if missing:
        if names == FLOW_IMAGE_CHANNELS:
            raise ConfigError(
                f"{path}: an 8-bit flow image holds (u, v, strain), each min-max scaled; "
                f"{', '.join(missing)} cannot be derived from it. Fix: set "
                "data.flow_channels to a subset of [u, v, strain], or use the .npy flows "
                "of `apexmer preprocess`"
            )
        raise FrameError(
            f"flow file has channels {', '.join(names)}, not {', '.join(missing)}",
            file=path,
            fix="set data.flow_channels to channels the files have",
        )
    stored = flow_to_input(features, names, channels, size)
    bad = non_finite(stored)
    if bad is not None:
        raise FrameError(
            f"flow array has {bad} once stored as float16 (values beyond +-65504 px)",
            file=path,
            fix="check how this flow was computed; a face's motion is a few pixels",
        )
    return stored


# ---------------------------------------------------------------- kinds


@dataclass(frozen=True)
class InputKind:
    """One kind of network input; see the module docstring."""

    name: str
    description: str
    dtype: torch.dtype  # of the stored tensor
    normalization: str  # in words, recorded in checkpoints

    def channels(self, data: DataConfig) -> tuple[str, ...]:
        return IMAGE_CHANNELS

    def describe(self, data: DataConfig) -> str:
        """What the network sees, in words (the Predictor's ``network_input``)."""
        return f"{data.frame} frame"

    def from_crops(self, crops: Mapping[str, np.ndarray], data: DataConfig) -> np.ndarray:
        """The stored input from aligned BGR crops per role (apex, mid, onset)."""
        return prepare_crop(_role(crops, data.frame), data.input_size)

    def from_clip(self, clip: ClipResult, data: DataConfig) -> np.ndarray:
        """The stored input of a preprocessed clip (the Predictor's path)."""
        return self.from_crops(clip.crops, data)

    def from_sample(self, sample: Sample, data: DataConfig) -> np.ndarray:
        """The stored input of a manifest sample (training's path); raises FrameError."""
        return load_crop(_crop_file(sample, data.frame), data.input_size)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0)

    def augment_config(self, config: Config) -> BatchAugmentConfig:
        """Training augmentation for this input; corners a rotation uncovers are black."""
        return BatchAugmentConfig(**config.augment.model_dump(), fill=0.0)

    def normalize(self, x: torch.Tensor, data: DataConfig) -> torch.Tensor:
        """Float batch (B, 3, S, S) in [0, 1] -> network input (ImageNet-style mean/std)."""
        mean, std = _channel_stats(tuple(data.mean), tuple(data.std), x.device)
        return (x - mean) / std


@functools.lru_cache(maxsize=16)
def _channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """mean/std as (1, 3, 1, 1) tensors on ``device``, made once per device and values:
    every training step reuses them (on a GPU a fresh tensor is a host->device copy)."""
    return (
        torch.tensor(mean, device=device).view(1, 3, 1, 1),
        torch.tensor(std, device=device).view(1, 3, 1, 1),
    )


class DiffInput(InputKind):
    def describe(self, data: DataConfig) -> str:
        return f"{data.frame} − onset difference"

    def from_crops(self, crops: Mapping[str, np.ndarray], data: DataConfig) -> np.ndarray:
        frame = prepare_crop(_role(crops, data.frame), data.input_size)
        return frame_difference(frame, prepare_crop(_role(crops, "onset"), data.input_size))

    def from_sample(self, sample: Sample, data: DataConfig) -> np.ndarray:
        frame_file, onset_file = _crop_file(sample, data.frame), _crop_file(sample, "onset")
        return frame_difference(
            load_crop(frame_file, data.input_size), load_crop(onset_file, data.input_size)
        )

    def augment_config(self, config: Config) -> BatchAugmentConfig:
        # Uncovered corners mid-grey: no motion.
        return BatchAugmentConfig(**config.augment.model_dump(), fill=128 / 255)


class FlowInput(InputKind):
    def channels(self, data: DataConfig) -> tuple[str, ...]:
        return tuple(data.flow_channels)

    def describe(self, data: DataConfig) -> str:
        return f"onset->{data.frame} optical flow ({', '.join(data.flow_channels)})"

    def from_crops(self, crops: Mapping[str, np.ndarray], data: DataConfig) -> np.ndarray:
        raise ValueError("a flow model needs the clip's flow, not its crops: use from_clip")

    def from_clip(self, clip: ClipResult, data: DataConfig) -> np.ndarray:
        if data.frame not in clip.flows:
            raise ValueError(
                f"the clip has no onset->{data.frame} flow. Fix: preprocess it with a flow "
                "(apexmer preprocess --flow tvl1, not --flow none)"
            )
        return self.from_features(clip.flows[data.frame], data)

    def from_features(self, features: np.ndarray, data: DataConfig) -> np.ndarray:
        """The stored input from flow features ``(H, W, 4)`` in ``FLOW_CHANNELS`` order."""
        features = np.asarray(features)
        if features.ndim != 3 or features.shape[2] != len(FLOW_CHANNELS):
            raise ValueError(
                f"flow features must be (H, W, {len(FLOW_CHANNELS)}) "
                f"({', '.join(FLOW_CHANNELS)}), got shape {features.shape}"
            )
        # Rounded to float16 as preprocessing stores it: a clip gives the same array here
        # as from the files written for it.
        with np.errstate(over="ignore"):  # beyond float16: inf, refused below
            features = features.astype(np.float16).astype(np.float32)
        stored = flow_to_input(features, FLOW_CHANNELS, self.channels(data), data.input_size)
        bad = non_finite(stored)
        if bad is not None:  # the same check as a flow file's (load_flow)
            raise DataError(
                f"the clip's onset->{data.frame} flow has {bad} as float16",
                fix="check the clip's frames (a face's motion is a few pixels)",
            )
        return stored

    def from_sample(self, sample: Sample, data: DataConfig) -> np.ndarray:
        field = FLOW_FIELDS[data.frame]
        path = getattr(sample, field)
        if path is None:
            raise FrameError(
                f"manifest has no {field} for {sample.key}",
                file=sample.key,
                fix="preprocess with flow on (`apexmer preprocess --flow tvl1`), or fill "
                f"{field} in the manifest",
            )
        return load_flow(path, self.channels(data), data.input_size)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def augment_config(self, config: Config) -> BatchAugmentConfig:
        channels = self.channels(config.data)
        a = config.augment.model_dump()
        a["grayscale_p"] = 0.0  # no colour in a flow field
        u = channels.index("u") if "u" in channels else None
        v = channels.index("v") if "v" in channels else None
        if (u is None) != (v is None) and a["rotation_deg"] > 0 and a["rotation_p"] > 0:
            raise ConfigError(
                f"data.flow_channels {list(channels)}: rotating a flow turns its (u, v) "
                "vectors, which needs both u and v. Fix: add the other one, or set "
                "augment.rotation_deg=0"
            )
        m = channels.index("magnitude") if "magnitude" in channels else None
        return BatchAugmentConfig(**a, fill=0.0, u_channel=u, v_channel=v, magnitude_channel=m)

    def normalize(self, x: torch.Tensor, data: DataConfig) -> torch.Tensor:
        """Per sample and channel, min-max to [0, 1] (a constant channel gives 0)."""
        lo = x.amin(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        hi = x.amax(dim=(2, 3), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-12)


INPUT_KINDS: dict[str, InputKind] = {
    "frame": InputKind(
        "frame", "the chosen frame's aligned crop", torch.uint8, "x / 255, then (x - mean) / std"
    ),
    "diff": DiffInput(
        "diff",
        "the chosen frame's crop minus the onset crop, 128 + 2 (frame - onset)",
        torch.uint8,
        "x / 255, then (x - mean) / std",
    ),
    "flow": FlowInput(
        "flow",
        "onset->frame optical flow: u, v, strain, magnitude",
        torch.float16,
        "per sample and channel, min-max to [0, 1]",
    ),
}


def list_inputs() -> list[str]:
    return list(INPUT_KINDS)


def get_input(name: str) -> InputKind:
    try:
        return INPUT_KINDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown input kind {name!r}; use one of {', '.join(INPUT_KINDS)}"
        ) from None


def input_channels(data: DataConfig) -> tuple[str, ...]:
    """The channels the network receives, in order."""
    return get_input(data.input).channels(data)


def input_metadata(data: DataConfig) -> dict[str, Any]:
    """The checkpoint's ``input`` entry: kind, channels, normalisation."""
    kind = get_input(data.input)
    return {
        "kind": kind.name,
        "channels": list(kind.channels(data)),
        "normalization": kind.normalization,
    }


def _role(crops: Mapping[str, np.ndarray], role: str) -> np.ndarray:
    if crops.get(role) is None:
        raise ValueError(f"no aligned {role} crop given")
    return crops[role]


def _crop_file(sample: Sample, frame: str) -> Path:
    path = frame_path(sample, frame)
    if path is None:
        raise FrameError(
            f"manifest has no {frame} crop for {sample.key}",
            file=sample.key,
            fix="re-run `apexmer preprocess`, or use --frame apex (flow-only manifests need "
            "data.input=flow)",
        )
    return path


# ---------------------------------------------------------------- batches


def prepare_batch(
    x: torch.Tensor,
    config: Config,
    aug: BatchAugmentConfig | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    *,
    mirror: bool = False,
) -> torch.Tensor:
    """Stored batch ``(B, C, S, S)`` -> network input on ``config.train.device``: float,
    augmented with ``aug`` when given (training), normalised for its kind. Several
    generators: ``x`` is that many equal groups (folds), each augmented with its own.
    ``mirror``: every sample flipped as training's flip does (``augment.hflip``: flow has
    u negated), before normalisation (the test-time flip, ``eval.tta: hflip``)."""
    kind = get_input(config.data.input)
    x = kind.to_float(x.to(config.train.device, non_blocking=True))
    if config.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if aug is not None:
        x = augment_batch(x, aug, generator)
    if mirror:
        x = hflip(x, kind.augment_config(config).u_channel)
    return kind.normalize(x, config.data)


def augment_config(config: Config) -> BatchAugmentConfig:
    """The training augmentation of ``config``'s input kind."""
    return get_input(config.data.input).augment_config(config)


# ---------------------------------------------------------------- model


def model_kwargs(name: str, in_chans: int, input_size: int) -> dict[str, Any]:
    """Constructor arguments that fit network ``name`` to the input: ``in_chans`` always,
    ``input_size`` for networks whose classifier depends on it (the flow networks)."""
    kwargs: dict[str, Any] = {"in_chans": in_chans}
    if model_info(name).sized_by_input:
        kwargs["input_size"] = input_size
    return kwargs


def config_model_kwargs(config: Config) -> dict[str, Any]:
    return model_kwargs(config.model.name, len(input_channels(config.data)), config.data.input_size)


def check_model_input(config: Config) -> None:
    """Raise ConfigError unless ``config.model`` takes ``config.data``'s input (channels and
    size; built and run on the meta device, so it costs no memory or arithmetic) and the
    augmentation suits the input. Run before loading data."""
    augment_config(config)
    data, name = config.data, config.model.name
    channels = input_channels(data)
    what = f"{data.input} input ({', '.join(channels)}) at {data.input_size} px"
    try:
        with torch.device("meta"):
            model = create_model(name, num_classes=2, **config_model_kwargs(config)).eval()
            model(torch.zeros(1, len(channels), data.input_size, data.input_size))
    except (ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model {name} does not take {what}: {first}. Fix: set data.flow_channels / "
            "data.input_size to what the model takes (`apexmer models` lists each model's "
            "default input), or choose another model"
        ) from None
