"""From clips to aligned crops: the one preprocessing code path, and the resumable corpus job.

``process_clip`` spots the apex and aligns the onset, mid (the paper's "non-apex": midway
between onset and apex) and apex frames; training data and the Predictor both go through
it. ``preprocess_corpus`` runs it over a corpus in parallel and writes::

    CACHE/images/<dataset>/<subject>/<clip>/{apex,mid,onset}.png   aligned crops
    CACHE/images/<dataset>/<subject>/<clip>/flow_{apex,mid}.npy    onset->apex/mid flow
        features (S, S, 4) float16 (u, v, strain, magnitude), unless flow is off
    CACHE/images/<dataset>/<subject>/<clip>/flow_apex.png          its colour wheel picture
    CACHE/records/<dataset>/<subject>/<clip>.json                  one per finished sample
    CACHE/preprocess.json                                          settings (must match)
    CACHE/manifest.csv                                             the manifest format
    CACHE/problems.csv                                             failed samples + reason

A sample is finished when its record exists; records are written last and atomically, so a
killed run restarted with the same settings redoes only unfinished samples and produces
the same files. A record is redone when one of its files is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd

from apexmer import __version__
from apexmer.data.frames import FrameSource, open_frames
from apexmer.data.manifest import write_manifest
from apexmer.data.sample import Problem, Sample, SampleSet
from apexmer.errors import ApexmerError, ConfigError, NoFaceError
from apexmer.face.align import AlignConfig, align_face, face_box_crop, transform_points
from apexmer.face.landmarks import (
    DETECTORS,
    FaceLandmarks,
    LandmarkDetector,
    get_detector,
)
from apexmer.face.pool import map_samples
from apexmer.fileio import atomic_path, write_json, write_text
from apexmer.preprocess.flow import FlowConfig, flow_to_color, pair_features
from apexmer.spotting.apex import SpotConfig, SpotResult, spot_clip

FRAME_ROLES = ("apex", "mid", "onset")
FLOW_ROLES = ("apex", "mid")  # flow from the onset to these frames
ProgressFn = Callable[[dict], None]


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that decides the crops; saved with the cache and in model checkpoints."""

    detector: str = "dlib"
    apex: Literal["labelled", "spotted"] = "labelled"
    spot: SpotConfig = field(default_factory=SpotConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    # "clip": one similarity transform per clip, from the apex frame's landmarks, for the
    # onset, mid and apex crops (the head is still within a 1/3 s clip, as onset-only
    # spotting already assumes; landmark jitter between frames, 3-8 px with dlib on
    # textured faces, would otherwise exceed the expression itself). "frame": each frame
    # aligned by its own landmarks.
    align_per: Literal["clip", "frame"] = "clip"
    # With apex="labelled", what a coded apex outside onset..offset (a known coding error:
    # two rows of the published SAMM sheet) becomes. "spotted" (default): the spotted apex
    # inside onset..offset, as for a row without an apex (the error may be in any of the
    # three numbers; the spotter only trusts the span, which frames the expression).
    # "clamped": the nearer of onset/offset (a boundary frame, near-neutral by definition).
    # "labelled": the coded frame as it is (it must exist among the clip's frames).
    apex_outside: Literal["spotted", "clamped", "labelled"] = "spotted"
    # onset->apex and onset->mid optical flow (preprocess/flow.py); None: crops only. On by
    # default: flow is the recommended network input for real data (METHOD.md section 11).
    flow: FlowConfig | None = field(default_factory=FlowConfig)

    def __post_init__(self) -> None:
        if self.apex not in ("labelled", "spotted"):
            raise ConfigError(f"apex={self.apex!r}; use 'labelled' or 'spotted'")
        if self.apex_outside not in ("spotted", "clamped", "labelled"):
            raise ConfigError(
                f"apex_outside={self.apex_outside!r}; use 'spotted', 'clamped' or 'labelled'"
            )
        if self.align_per not in ("clip", "frame"):
            raise ConfigError(f"align_per={self.align_per!r}; use 'clip' or 'frame'")
        if self.detector not in DETECTORS:
            raise ConfigError(
                f"unknown landmark detector {self.detector!r} (installed: "
                f"{', '.join(sorted(DETECTORS))}). Fix: install the package that provides "
                "it, or preprocess (and train) again with --detector dlib"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "apex": self.apex,
            "spot": asdict(self.spot),
            "align": asdict(self.align),
            "align_per": self.align_per,
            "apex_outside": self.apex_outside,
            "flow": self.flow.to_dict() if self.flow is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        return cls(
            detector=d.get("detector", "dlib"),
            apex=d.get("apex", "labelled"),
            spot=SpotConfig(**d.get("spot", {})),
            align=AlignConfig(**d.get("align", {})),
            align_per=d.get("align_per", "frame"),  # caches made before the option
            apex_outside=d.get("apex_outside", "spotted"),
            flow=FlowConfig.from_dict(d["flow"]) if d.get("flow") else None,  # older: none
        )


@dataclass
class ClipResult:
    """What preprocessing knows about one clip."""

    onset: int
    offset: int
    apex: int  # the apex used for the crops (frame number)
    apex_spotted: int
    apex_labelled: int | None
    mid: int
    spot: SpotResult
    landmarks: dict[str, FaceLandmarks]  # per role, in frame coordinates
    crops: dict[str, np.ndarray]  # per role, aligned (S, S, 3) uint8 BGR
    matrices: dict[str, np.ndarray]  # per role, (2, 3) frame -> crop
    apex_source: str = "spotted"  # labelled | spotted | clamped (see choose_apex)
    # per role in FLOW_ROLES, onset -> role flow features (S, S, 4) float32 in FLOW_CHANNELS
    # order, both frames aligned by the apex frame's transform; empty when flow is off
    flows: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def apex_index(self) -> int:
        """Index of the apex among the frames onset..offset."""
        return self.spot.numbers.index(self.apex)


def mid_frame(numbers: list[int], onset: int, apex: int) -> int:
    """The frame midway between onset and apex (nearest existing frame number)."""
    target = (onset + apex) / 2.0
    inside = [n for n in numbers if onset <= n <= apex] or numbers
    return min(inside, key=lambda n: (abs(n - target), n))


def face_on(frame: np.ndarray, detector: LandmarkDetector, where: str) -> FaceLandmarks:
    found = detector.detect(frame)
    if found is None:
        raise NoFaceError(
            f"{where}: no face found. Fix: check that the frame shows a "
            "frontal face of at least ~80 px, or drop this sample"
        )
    return found


def choose_apex(
    spot: SpotResult, apex_label: int | None, config: PreprocessConfig
) -> tuple[int, str]:
    """``(apex frame, where it came from)`` under the config's apex policy."""
    if config.apex == "spotted" or apex_label is None:
        return spot.apex, "spotted"
    if spot.onset <= apex_label <= spot.offset or config.apex_outside == "labelled":
        return apex_label, "labelled"
    if config.apex_outside == "clamped":
        return min(max(apex_label, spot.onset), spot.offset), "clamped"
    return spot.apex, "spotted"


def process_clip(
    source: FrameSource,
    onset: int | None = None,
    offset: int | None = None,
    *,
    detector: LandmarkDetector,
    config: PreprocessConfig = PreprocessConfig(),
    apex_label: int | None = None,
    flow_roles: tuple[str, ...] = FLOW_ROLES,
) -> ClipResult:
    """Spot the apex of one clip, align its apex, mid and onset frames and, when
    ``config.flow`` is set, compute the onset -> ``flow_roles`` flows."""
    spot = spot_clip(source, onset, offset, detector, config.spot)
    apex, apex_source = choose_apex(spot, apex_label, config)
    if apex not in source.numbers:
        raise ApexmerError(
            f"{source.path}: apex frame {apex} is not among the frames "
            f"({source.numbers[0]}..{source.numbers[-1]}). Fix: correct the "
            "ApexFrame in the coding sheet, or use --apex spotted"
            + (" or --apex-outside spotted" if apex_source == "labelled" else "")
        )
    roles = {"onset": spot.onset, "mid": mid_frame(spot.numbers, spot.onset, apex), "apex": apex}
    landmarks: dict[str, FaceLandmarks] = {}
    crops: dict[str, np.ndarray] = {}
    matrices: dict[str, np.ndarray] = {}
    frames = {role: source.read(number) for role, number in roles.items()}

    def face_of(role: str) -> FaceLandmarks:
        if roles[role] == spot.onset:
            return spot.face
        return face_on(frames[role], detector, f"{source.path} frame {roles[role]} ({role})")

    # Every cropped frame must show a face (a face lost mid-clip fails the sample, never a
    # black crop); with align_per="clip" the apex frame's transform then aligns all three.
    faces = {role: face_of(role) for role in roles}
    for role in roles:
        lm = faces["apex"] if config.align_per == "clip" else faces[role]
        crops[role], matrices[role] = align_face(frames[role], lm.points, config.align)
        landmarks[role] = faces[role]
    flows = {}
    if config.flow is not None:
        pose = (faces["apex"], matrices["apex"])
        flows = _clip_flows(frames, crops, pose, config.flow, config, flow_roles)
    return ClipResult(
        onset=spot.onset,
        offset=spot.offset,
        apex=apex,
        apex_spotted=spot.apex,
        apex_labelled=apex_label,
        mid=roles["mid"],
        spot=spot,
        landmarks=landmarks,
        crops=crops,
        matrices=matrices,
        apex_source=apex_source,
        flows=flows,
    )


def _clip_flows(
    frames: dict[str, np.ndarray],
    crops: dict[str, np.ndarray],
    pose: tuple[FaceLandmarks, np.ndarray],
    flow: FlowConfig,
    config: PreprocessConfig,
    roles: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """Onset -> role flow features with ONE transform (the apex frame's) for both frames of
    a pair, so head pose does not enter the flow: the crops themselves with
    align_per="clip", the frames warped again by the apex transform with "frame"; in the
    ``ststnet`` flow style the apex frame's face box cut from both frames.
    ``pose``: the apex frame's landmarks and its (2, 3) frame -> crop matrix."""
    apex_face, apex_matrix = pose
    if flow.style == "ststnet":
        # The face box of the apex frame for both frames (one box, as one transform above),
        # at the crop size: no mask, no margin (face.align.face_box_crop).

        def box(role: str) -> tuple[np.ndarray, np.ndarray]:
            return face_box_crop(frames[role], apex_face.points, config.align.size)

        onset, box_matrix = box("onset")
        nose = transform_points(apex_face.points, box_matrix)
        return {role: pair_features(onset, box(role)[0], flow, nose) for role in roles}
    nose = transform_points(apex_face.points, apex_matrix)  # landmarks in crop coordinates

    def crop(role: str) -> np.ndarray:
        if config.align_per == "clip":
            return crops[role]
        return align_face(frames[role], apex_face.points, config.align)[0]

    onset = crop("onset")
    return {role: pair_features(onset, crop(role), flow, nose) for role in roles}


# ---------------------------------------------------------------- corpus job


def _rel(sample: Sample) -> Path:
    return Path(sample.dataset) / sample.subject / sample.clip


def record_path(cache: Path, sample: Sample) -> Path:
    return cache / "records" / _rel(sample).with_suffix(".json")


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ApexmerError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def write_flows(folder: Path, flows: dict[str, np.ndarray]) -> dict[str, Path]:
    """``flow_<role>.npy`` per role, float16 (S, S, 4) (max abs error of the cast, measured
    in bench/flow_accuracy.py: below 1e-3 px for motions under 2 px), and the colour
    wheel picture ``flow_apex.png``. Returns {"flow_<role>": path, "flow_apex_png": path}."""
    paths = {}
    for role, features in flows.items():
        paths[f"flow_{role}"] = folder / f"flow_{role}.npy"
        _write_npy(paths[f"flow_{role}"], features.astype(np.float16))
    if "apex" in flows:
        paths["flow_apex_png"] = folder / "flow_apex.png"
        _write_png(paths["flow_apex_png"], flow_to_color(flows["apex"][..., :2]))
    return paths


def sample_inputs(sample: Sample) -> dict[str, Any]:
    """What a record was computed from; a record is reused only while these are unchanged."""
    return {
        "frames": str(sample.frames),
        "onset": sample.onset,
        "apex": sample.apex,
        "offset": sample.offset,
        "label": sample.label,
    }


def is_done(cache: Path, sample: Sample) -> bool:
    """A finished record for this sample's current inputs with all its files (failed
    samples are retried)."""
    path = record_path(cache, sample)
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False  # damaged outside apexmer: redo
    if record.get("status") != "ok" or record.get("inputs") != sample_inputs(sample):
        return False
    return all((cache / rel).is_file() for rel in record.get("paths", {}).values())


def process_sample(
    sample: Sample, cache: Path, detector: LandmarkDetector, config: PreprocessConfig
) -> dict[str, Any]:
    """Preprocess one corpus sample; return its record (status ok or failed, never raises
    for a per-sample problem)."""
    base = {
        "key": sample.key,
        "dataset": sample.dataset,
        "subject": sample.subject,
        "clip": sample.clip,
        "label": sample.label,
        "frames": str(sample.frames),
        "inputs": sample_inputs(sample),
    }
    try:
        if sample.frames is None:
            raise ApexmerError("sample has no frames location. Fix: pass --root")
        with open_frames(sample.frames) as source:
            res = process_clip(
                source,
                sample.onset,
                sample.offset,
                detector=detector,
                config=config,
                apex_label=sample.apex,
            )
    except (ApexmerError, ValueError, OSError, cv2.error) as exc:
        return {**base, "status": "failed", "reason": str(exc)}
    paths = {}
    folder = cache / "images" / _rel(sample)
    for role in FRAME_ROLES:
        path = folder / f"{role}.png"
        _write_png(path, res.crops[role])
        paths[role] = str(path.relative_to(cache))
    for name, path in write_flows(folder, res.flows).items():
        paths[name] = str(path.relative_to(cache))
    box = res.landmarks["apex"].box
    return {
        **base,
        "status": "ok",
        "onset": res.onset,
        "offset": res.offset,
        "apex": res.apex,
        "apex_labelled": res.apex_labelled,
        "apex_spotted": res.apex_spotted,
        "mid": res.mid,
        "apex_source": res.apex_source,
        "paths": paths,
        "flow": config.flow.algorithm if config.flow is not None else None,
        "face_box": [int(v) for v in box],
        "curve": res.spot.as_dict()["curve"],
    }


def _preprocess_task(
    sample: Sample, detector: LandmarkDetector, cache: Path, config: PreprocessConfig
) -> dict[str, Any]:
    record = process_sample(sample, cache, detector, config)
    write_json(record_path(cache, sample), record)
    return record


def _check_settings(cache: Path, config: PreprocessConfig, coding_version: str) -> None:
    path = cache / "preprocess.json"
    settings = {"preprocess": config.to_dict(), "coding_version": coding_version}
    if path.exists():
        old = json.loads(path.read_text())
        try:  # read as a config, so keys that older versions did not write get their meaning
            old["preprocess"] = PreprocessConfig.from_dict(old.get("preprocess", {})).to_dict()
        except (ApexmerError, TypeError):
            old["preprocess"] = None
        if {k: old.get(k) for k in settings} != settings:
            raise ApexmerError(
                f"{cache}: this cache was made with other preprocessing "
                "settings or another coding sheet; its crops cannot be mixed. "
                "Fix: pass a new --out folder, or delete this one"
            )
        return
    write_json(path, {**settings, "version": __version__})


@dataclass
class PreprocessResult:
    manifest: Path
    problems_csv: Path
    n_ok: int
    n_failed: int
    problems: list[Problem]


def preprocess_corpus(
    sample_set: SampleSet,
    cache: str | Path,
    config: PreprocessConfig = PreprocessConfig(),
    *,
    workers: int = 1,
    progress: ProgressFn | None = None,
) -> PreprocessResult:
    """Preprocess every sample (resuming a killed run); write manifest.csv and problems.csv."""
    cache = Path(cache)
    if cache.exists() and not cache.is_dir():
        raise ApexmerError(f"{cache} is a file. Fix: pass a folder for --out")
    get_detector(config.detector)  # a missing backend fails here, before the cache is made
    cache.mkdir(parents=True, exist_ok=True)
    _check_settings(cache, config, sample_set.coding_version)
    for stale in cache.rglob(".*.tmp"):  # left by a killed run's unfinished atomic writes
        stale.unlink()
    todo = [s for s in sample_set.samples if not is_done(cache, s)]
    if progress:
        progress(
            {
                "event": "start",
                "total": len(sample_set.samples),
                "done": len(sample_set.samples) - len(todo),
            }
        )
    for record in map_samples(
        _preprocess_task, todo, config.detector, max(1, workers), cache=cache, config=config
    ):
        if progress:
            progress({"event": "sample", "key": record["key"], "status": record["status"]})
    records = [json.loads(record_path(cache, s).read_text()) for s in sample_set.samples]
    return write_outputs(cache, sample_set, records)


def write_outputs(
    cache: Path, sample_set: SampleSet, records: list[dict[str, Any]]
) -> PreprocessResult:
    by_key = {r["key"]: r for r in records}
    flow_columns = ("flow",) if any(r.get("flow") for r in records) else ()
    ok_samples = []
    problems = list(sample_set.problems)  # warnings (kept, flagged samples) included
    for s in sample_set.samples:
        r = by_key[s.key]
        if r["status"] != "ok":
            problems.append(Problem(file=str(s.frames), sample=s.key, message=r["reason"]))
            continue
        paths = {name: cache / rel for name, rel in r["paths"].items()}
        ok_samples.append(
            s.with_(
                onset=r["onset"],
                apex=r["apex"],
                offset=r["offset"],
                apex_spotted=r["apex_spotted"],
                apex_path=paths["apex"],
                mid_path=paths["mid"],
                onset_path=paths["onset"],
                flow_path=paths.get("flow_apex"),
                flow_mid_path=paths.get("flow_mid"),
                extra={"apex_labelled": r["apex_labelled"], "mid": r["mid"], "flow": r.get("flow")},
            )
        )
    manifest = cache / "manifest.csv"
    out_set = SampleSet(
        samples=ok_samples,
        classes=sample_set.classes,
        coding_version=sample_set.coding_version,
        source=str(manifest),
    )
    write_manifest(out_set, manifest, extra_columns=("mid", *flow_columns))
    problems_csv = cache / "problems.csv"
    table = pd.DataFrame(
        [p.as_dict() for p in problems], columns=["file", "row", "sample", "level", "message"]
    )
    write_text(problems_csv, table.to_csv(index=False))
    return PreprocessResult(
        manifest=manifest,
        problems_csv=problems_csv,
        n_ok=len(ok_samples),
        n_failed=sum(not p.is_warning for p in problems),
        problems=problems,
    )
