"""Recognise micro-expressions in new clips: checkpoint in, one DataFrame row per clip out.

    from apexmer.inference import Predictor
    predictor = Predictor.from_checkpoint("model_dir")
    table = predictor.predict(["clip1.mp4", "frames/clip2/"])

Each clip goes through ``preprocess.pipeline.process_clip`` with the checkpoint's own
preprocessing settings (apex always spotted: a new clip has no labels; flows in the flow
style the checkpoint records, ``ststnet`` for a model trained on the public flow images),
with the spotter the checkpoint records (``spotter``; for checkpoints without it
``spotting.apex.default_spot_method`` of their preset: motion unless the paper's), then the network
input is built from its crops or flow by the checkpoint's input kind (``training/inputs.py``:
the same code that loads training data) and normalised exactly as in training. The inputs
of all clips go through the network as one batch.

Memory: a video is streamed (``apexmer.data.frames.VideoFrames``), never decoded whole,
and so is spotting (``spotting.apex.stream_curve``: onset..offset read forward, twice
with the paper's offset term). Per clip, prediction holds a few decoded frames, the 10
uint8 ROI crops (10 x s^2 bytes, s half the eye distance) of a window of frames, one
float32 block of the curve and the lag frames either side (``stream_frames``: ~2 MB), plus
the curve's fixed ~40 MB working set, whatever the clip's length; what grows with it is
~1 kB a frame (the curve, frame numbers). A result keeps the apex frame (``predict_clips``
only), three aligned crops, the flow and the curve, not the frames
(``bench/memory_vs_length.py``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from torch import nn

from apexmer.config import DataConfig, build_config
from apexmer.data.crops import prepare_crop
from apexmer.data.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameSource, open_frames
from apexmer.errors import ApexmerError, DataError, WeightsError
from apexmer.face.landmarks import DETECTORS, FaceLandmarks, LandmarkDetector, get_detector
from apexmer.inference.long_video import recognise_intervals
from apexmer.preprocess.flow import FlowConfig
from apexmer.preprocess.pipeline import ClipResult, PreprocessConfig, process_clip
from apexmer.spotting.apex import SPOT_METHODS, default_spot_method
from apexmer.spotting.intervals import IntervalConfig
from apexmer.training.checkpoint import load_checkpoint, with_legacy_input
from apexmer.training.devices import check_device
from apexmer.training.engine import predict_proba
from apexmer.training.inputs import get_input

Source = str | Path | Sequence[np.ndarray] | np.ndarray | FrameSource
FACE_COLUMNS = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight")
INT_COLUMNS = ("onset", "apex", "apex_index", "offset", *FACE_COLUMNS)
# Failures that belong to one input (bad file, no face); anything else is a bug and raises.
INPUT_ERRORS = (ApexmerError, ValueError, OSError, cv2.error)
# Python packages each landmark backend needs, for a clear error before the first clip.
BACKEND_PACKAGES = {"dlib": ("dlib", "dlib-bin")}


@dataclass
class ClipPrediction:
    """Everything known about one clip after prediction (what the web app shows)."""

    input: str
    onset: int | None = None
    apex: int | None = None
    apex_index: int | None = None  # index of the apex within onset..offset
    offset: int | None = None
    frame: str = "apex"  # the frame the network saw: apex | mid | onset
    # in words, e.g. "apex − onset difference", "onset->apex optical flow (u, v, strain)"
    network_input: str = "apex frame"
    face_box: tuple[int, int, int, int] | None = None  # x, y, w, h on the apex frame
    probs: np.ndarray | None = None  # (K,) softmax, class index order
    label: str | None = None
    confidence: float | None = None
    numbers: list[int] = field(default_factory=list)  # frame numbers onset..offset
    curve: np.ndarray | None = None  # (T,) spotting score, NaN where skipped
    crop: np.ndarray | None = None  # aligned crop the network saw, (S, S, 3) BGR
    apex_crop: np.ndarray | None = None  # aligned apex crop, (S, S, 3) BGR
    apex_frame: np.ndarray | None = None  # the full apex frame, (H, W, 3) BGR
    onset_crop: np.ndarray | None = None  # aligned onset crop (diff models subtract it)
    # onset->apex flow features (S, S, 4) float32: u, v, strain, magnitude (flow models)
    flow: np.ndarray | None = None
    # the network's input before normalisation, (C, S, S) as training stores it
    stored_input: np.ndarray | None = None
    landmarks: FaceLandmarks | None = None  # on the apex frame
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    error: str | None = None
    spotter: str = "motion"  # the apex spotter used (spotting.apex: paper | motion)
    flow_style: str | None = None  # flow models: the flow style (preprocess.flow)

    @property
    def ok(self) -> bool:
        return self.error is None

    def row(self, classes: Sequence[str]) -> dict[str, Any]:
        """One flat DataFrame row (py-feat names for the face box)."""
        box = self.face_box or (None,) * 4
        probs = self.probs if self.probs is not None else [np.nan] * len(classes)
        return {
            "input": self.input,
            "onset": self.onset,
            "apex": self.apex,
            "apex_index": self.apex_index,
            "offset": self.offset,
            **dict(zip(FACE_COLUMNS, box, strict=True)),
            "pred_label": self.label,
            "confidence": np.nan if self.confidence is None else self.confidence,
            **{f"prob_{c}": float(p) for c, p in zip(classes, probs, strict=True)},
            "frame": self.frame,
            "spotter": self.spotter,
            "flow_style": self.flow_style,
            "error": self.error,
        }


def input_data(metadata: dict[str, Any]) -> DataConfig:
    """The data settings a checkpoint's network input is built with: frame, input kind and
    channels (the checkpoint's ``input`` entry), size, mean/std."""
    entry = with_legacy_input(metadata)["input"]
    fields: dict[str, Any] = {
        "frame": metadata.get("frame", "apex"),
        "input": entry["kind"],
        "input_size": int(metadata["input_size"]),
        "mean": metadata["mean"],
        "std": metadata["std"],
    }
    if entry["kind"] == "flow":
        fields["flow_channels"] = tuple(entry["channels"])
    try:
        return DataConfig(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WeightsError(
            f"checkpoint input settings are invalid ({where}: {first['msg']}). Fix: "
            "re-create it with `apexmer train`"
        ) from None


def describe_input(metadata: dict[str, Any]) -> str:
    """What the network of a checkpoint sees, in words: "apex frame", "apex − onset
    difference", "onset->apex optical flow (u, v, strain)"."""
    data = input_data(metadata)
    return get_input(data.input).describe(data)


def inference_spotter(metadata: dict[str, Any]) -> str:
    """The apex spotter a checkpoint's model uses on new clips: its ``spotter`` entry, or
    for checkpoints without one ``default_spot_method`` of its training preset."""
    if metadata.get("spotter"):
        return str(metadata["spotter"])
    name = (metadata.get("config") or {}).get("name")
    return default_spot_method(name if isinstance(name, str) else None)


def crop_to_input(crop_bgr: np.ndarray, size: int) -> np.ndarray:
    """Aligned BGR crop ``(S, S, 3)`` -> RGB uint8 ``(3, size, size)``, exactly as training
    reads a crop (``apexmer.data.crops.prepare_crop``)."""
    return prepare_crop(crop_bgr, size)


def find_clips(path: str | Path) -> list[Path]:
    """The clips under ``path``: a video file or a folder of frames is one clip; a folder
    holding videos and/or frame sub-folders (and no images) is a folder of clips."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(
            "no such file or folder",
            file=path,
            fix="pass a video file, a folder of frames, or a folder of clips",
        )
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return [path]
    clips = [
        p
        for p in entries
        if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        or (p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()))
    ]
    if not clips:
        raise DataError(
            "holds no images, videos or frame folders",
            file=path,
            fix="pass a video file, a folder of frames, or a folder of clips",
        )
    return clips


def _is_one_clip(source: Any) -> bool:
    """A path, a FrameSource, a (T, H, W[, C]) array or a list of frame arrays."""
    if isinstance(source, (str, Path)) or hasattr(source, "read"):
        return True
    if isinstance(source, np.ndarray):
        return source.ndim >= 3
    return len(source) > 0 and all(isinstance(f, np.ndarray) for f in source)


def _name(source: Any, index: int) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if hasattr(source, "path"):
        return str(source.path)
    return f"<frames {index}>"


class _TimedSource:
    """A FrameSource that adds the time spent in ``read`` (decoding) to ``seconds``."""

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self.path = source.path
        self.numbers = source.numbers
        self.fps = getattr(source, "fps", None)
        self.seconds = 0.0

    def read(self, number: int) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self._source.read(number)
        finally:
            self.seconds += time.perf_counter() - start


class _TimedDetector:
    """A LandmarkDetector that adds its detect/fit time to ``seconds``."""

    def __init__(self, detector: LandmarkDetector) -> None:
        self._detector = detector
        self.name = detector.name
        self.seconds = 0.0

    def detect(self, image_bgr: np.ndarray) -> FaceLandmarks | None:
        start = time.perf_counter()
        try:
            return self._detector.detect(image_bgr)
        finally:
            self.seconds += time.perf_counter() - start

    def fit(self, image_bgr: np.ndarray, box: tuple[int, int, int, int]) -> FaceLandmarks:
        start = time.perf_counter()
        try:
            return self._detector.fit(image_bgr, box)
        finally:
            self.seconds += time.perf_counter() - start


def check_backend(name: str, source: str = "the checkpoint") -> None:
    """Raise a clear error when the landmark backend ``name`` is unknown or not installed."""
    if name not in DETECTORS:
        raise ApexmerError(
            f"{source} was preprocessed with the landmark backend {name!r}, "
            f"which this installation does not have (it has: "
            f"{', '.join(sorted(DETECTORS))}). Fix: install the package that "
            f"provides it"
        )
    module, package = BACKEND_PACKAGES.get(name, (None, None))
    if module and importlib.util.find_spec(module) is None:
        raise ApexmerError(
            f"{source} needs the {name!r} landmark backend, but the Python "
            f"module {module!r} is not installed. Fix: pip install {package}"
        )


class Predictor:
    """A trained model plus its preprocessing: clips in, predictions out.

    Thread-safe for concurrent ``predict`` calls when no ``detector`` is given: each
    thread builds its own landmark detector (dlib's are not thread-safe). A detector
    passed in is used by every thread; then serialise calls yourself.
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: dict[str, Any],
        device: str = "cpu",
        detector: LandmarkDetector | None = None,
        source: str = "the checkpoint",
        max_frames: int | None = None,
        spot_method: str | None = None,
    ) -> None:
        metadata = with_legacy_input(metadata)
        self.metadata = metadata
        self.device = device
        self.classes: tuple[str, ...] = tuple(metadata["classes"])
        self.input_size = int(metadata["input_size"])
        self.frame: str = metadata["frame"]
        # What the network sees (frame, diff, flow) and how it is built: the input registry.
        data = input_data(metadata)
        self.input_kind: str = data.input
        self.max_frames = max_frames
        # A new clip has no labelled apex: always the spotted one. Flow is computed for flow
        # models only (TV-L1 costs ~0.2 s per pair); with the checkpoint's flow settings, or
        # apexmer's defaults where it records none (said so in ``metadata``).
        preprocess = PreprocessConfig.from_dict(metadata["preprocess"])
        flow = preprocess.flow if self.input_kind == "flow" else None
        if self.input_kind == "flow" and flow is None:
            flow = FlowConfig()
            self.metadata = {
                **metadata,
                "inference_flow": {
                    "settings": flow.to_dict(),
                    "source": "apexmer's default FlowConfig: the checkpoint records none",
                },
            }
        self.spotter = spot_method or inference_spotter(metadata)
        if self.spotter not in SPOT_METHODS:
            raise ApexmerError(
                f"unknown spotter {self.spotter!r}. Fix: use one of {', '.join(SPOT_METHODS)}"
            )
        spot = dataclasses.replace(preprocess.spot, method=self.spotter)
        self.preprocess = dataclasses.replace(preprocess, apex="spotted", flow=flow, spot=spot)
        self.flow_style: str | None = flow.style if flow is not None else None
        self.metadata = {**self.metadata, "spotter": self.spotter}  # what inference uses
        # apex for ClipPrediction.flow (the web page), and the network's own frame
        self.flow_roles: tuple[str, ...] = (
            tuple(dict.fromkeys(("apex", self.frame))) if flow is not None else ()
        )
        # The training config carries the eval batch size; the input settings come from the
        # checkpoint's own keys; inference runs in float32 on the chosen device whatever the
        # training run used.
        cfg = dict(metadata.get("config") or {})
        cfg["data"] = {**cfg.get("data", {}), **data.model_dump()}
        cfg["train"] = {**cfg.get("train", {}), "device": device, "amp": "none"}
        # Test-time augmentation as the checkpoint records it (older ones: none).
        cfg["eval"] = {**cfg.get("eval", {}), "tta": metadata.get("tta", "none")}
        self.config = build_config(cfg, source=source)
        check_device(device)
        self.model = model.to(device).eval()
        if detector is None:
            check_backend(self.preprocess.detector, source)
        self._detector = detector
        self._local = threading.local()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "cpu",
        detector: LandmarkDetector | None = None,
        max_frames: int | None = None,
        spot_method: str | None = None,
    ) -> Predictor:
        """Load ``model.safetensors`` (or the folder holding it) for inference;
        ``spot_method`` overrides the spotter the checkpoint records."""
        check_device(device)
        model, metadata = load_checkpoint(path, device=device)
        return cls(
            model,
            metadata,
            device=device,
            detector=detector,
            source=str(path),
            max_frames=max_frames,
            spot_method=spot_method,
        )

    # ------------------------------------------------------------ public API

    def predict(
        self,
        source: Source | Sequence[Source],
        onset: int | None = None,
        offset: int | None = None,
        on_error: Literal["raise", "record"] | None = None,
    ) -> pd.DataFrame:
        """One row per clip: frame numbers, face box, ``pred_label``, ``confidence``,
        ``prob_<class>``, ``frame``, ``spotter``, ``flow_style`` (None unless a flow model)
        and ``error``.

        ``source`` is a video file, a frame folder, a list of frames, or a list of such
        clips. Without ``onset``/``offset`` the whole clip is used. ``on_error`` defaults to
        ``"raise"`` for one clip and ``"record"`` (an ``error`` row, NaN predictions) for
        several. Memory per clip: see the module docstring (videos are streamed).
        """
        results = self.predict_clips(source, onset, offset, on_error=on_error, keep_frames=False)
        return self.to_frame(results)

    def to_frame(self, results: Sequence[ClipPrediction]) -> pd.DataFrame:
        """The DataFrame of ``predict`` from ``predict_clips`` results."""
        table = pd.DataFrame([r.row(self.classes) for r in results])
        for column in INT_COLUMNS:
            table[column] = table[column].astype("Int64")
        return table

    def predict_clips(
        self,
        source: Source | Sequence[Source],
        onset: int | None = None,
        offset: int | None = None,
        on_error: Literal["raise", "record"] | None = None,
        keep_frames: bool = True,
    ) -> list[ClipPrediction]:
        """Like ``predict`` but returns rich results (curve, crops, apex frame, timings).
        ``keep_frames=False`` leaves out the full apex frame (one H x W x 3 frame per clip,
        which a batch of many clips would otherwise accumulate)."""
        single = _is_one_clip(source)
        sources = [source] if single else list(source)
        if not sources:
            raise DataError("no clips given", fix="pass a video, a frame folder or a list")
        on_error = on_error or ("raise" if single else "record")
        results = [
            self._preprocess(s, _name(s, i), onset, offset, on_error, keep_frames)
            for i, s in enumerate(sources)
        ]
        ok = [r for r in results if r.ok]
        if ok:
            start = time.perf_counter()
            probs = self.predict_inputs([r.stored_input for r in ok])
            share = (time.perf_counter() - start) / len(ok)  # the batch's time, split evenly
            for r, p in zip(ok, probs, strict=True):
                if not np.isfinite(p).all():  # never a NaN confidence: the clip fails
                    error = DataError(
                        "the network's output for this clip is not finite (NaN or inf)",
                        file=r.input,
                        fix="re-create the model with `apexmer train` (its weights are damaged)",
                    )
                    if on_error == "raise":
                        raise error
                    r.error = str(error)
                    continue
                k = int(np.argmax(p))
                r.probs, r.label, r.confidence = p, self.classes[k], float(p[k])
                r.timings["network"] = share
                r.timings["total"] = sum(r.timings.values())
        return results

    def predict_inputs(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Softmax ``(N, K)`` for stored-form inputs ``(C, S, S)`` (uint8 images or float16
        flow, as ``training.inputs`` builds them), normalised as in training."""
        return predict_proba(self.model, torch.from_numpy(np.stack(inputs)), self.config)

    def predict_crops(
        self, crops_bgr: Sequence[np.ndarray], onset_crops_bgr: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Softmax ``(N, K)`` for aligned BGR crops, as training saw them (resize, RGB,
        difference to the onset crop for ``diff`` models, normalise)."""
        kind, data = get_input(self.input_kind), self.config.data
        if self.input_kind == "flow":
            raise DataError(
                "this model classifies optical flow, not crops",
                fix="use predict_flows with the onset->apex flow features, or predict",
            )
        if self.input_kind == "diff" and onset_crops_bgr is None:
            raise DataError(
                "this model classifies frame-minus-onset differences",
                fix="pass the aligned onset crops as well",
            )
        onsets = onset_crops_bgr if onset_crops_bgr is not None else [None] * len(crops_bgr)
        inputs = [
            kind.from_crops({"onset": o, self.frame: c}, data)  # frame=onset: the crop itself
            for c, o in zip(crops_bgr, onsets, strict=True)
        ]
        return self.predict_inputs(inputs)

    def predict_flows(self, flows: Sequence[np.ndarray]) -> np.ndarray:
        """Softmax ``(N, K)`` for flow features ``(H, W, 4)`` (u, v, strain, magnitude, as
        ``preprocess.flow.flow_features`` gives them) of the model's frame."""
        if self.input_kind != "flow":
            raise DataError(
                f"this model classifies {describe_input(self.metadata)}, not optical flow",
                fix="use predict_crops or predict",
            )
        kind = get_input("flow")
        return self.predict_inputs([kind.from_features(f, self.config.data) for f in flows])

    # ------------------------------------------------------------ internals

    def detector(self) -> LandmarkDetector:
        """This thread's landmark detector (or the one given to the constructor)."""
        if self._detector is not None:
            return self._detector
        det = getattr(self._local, "detector", None)
        if det is None:
            det = self._local.detector = get_detector(self.preprocess.detector)
        return det

    def _preprocess(
        self,
        source: Source,
        name: str,
        onset: int | None,
        offset: int | None,
        on_error: str,
        keep_frame: bool = True,
    ) -> ClipPrediction:
        out = ClipPrediction(
            input=name,
            frame=self.frame,
            network_input=describe_input(self.metadata),
            spotter=self.spotter,
            flow_style=self.flow_style,
        )
        frames = None
        try:
            start = time.perf_counter()
            frames = source if hasattr(source, "read") else open_frames(source, self.max_frames)
            opened = time.perf_counter() - start
            timed_src, timed_det = _TimedSource(frames), _TimedDetector(self.detector())
            start = time.perf_counter()
            res = process_clip(
                timed_src,
                onset,
                offset,
                detector=timed_det,
                config=self.preprocess,
                flow_roles=self.flow_roles,
            )
            elapsed = time.perf_counter() - start
            out.timings = {
                "decode": opened + timed_src.seconds,
                "landmarks": timed_det.seconds,
                "spot_align": elapsed - timed_src.seconds - timed_det.seconds,
            }
            self._fill(out, res, frames, keep_frame)
        except INPUT_ERRORS as exc:
            if on_error == "raise":
                raise
            out.error = str(exc)
        finally:
            if frames is not None and frames is not source:
                frames.close()  # a video opened here: its decoder and cached frames go now
        return out

    def _fill(
        self, out: ClipPrediction, res: ClipResult, source: FrameSource, keep_frame: bool
    ) -> None:
        out.onset, out.apex, out.offset = res.onset, res.apex, res.offset
        out.apex_index = res.apex_index
        out.numbers, out.curve = list(res.spot.numbers), res.spot.curve
        out.landmarks = res.landmarks["apex"]
        out.face_box = tuple(int(v) for v in out.landmarks.box)
        out.crop, out.apex_crop = res.crops[self.frame], res.crops["apex"]
        out.onset_crop = res.crops["onset"]
        out.flow = res.flows.get("apex")
        out.stored_input = get_input(self.input_kind).from_clip(res, self.config.data)
        out.apex_frame = source.read(res.apex) if keep_frame else None

    def spot(
        self,
        video: Source,
        fps: float | None = None,
        config: IntervalConfig | None = None,
    ) -> pd.DataFrame:
        """Spot the expression intervals of a long ``video`` (file, frame folder or
        FrameSource) and classify each micro-expression: one row per interval, frames and
        seconds, type, ``pred_label`` and ``prob_<class>`` (``inference.long_video``)."""
        if hasattr(video, "read"):
            return recognise_intervals(self, video, fps, config).table()
        with open_frames(video) as source:  # a video holds a decoder until closed
            return recognise_intervals(self, source, fps, config).table()
