"""Does apexmer's flow look like the public flow images? A self-check for anyone holding both.

For each clip of a flow-image manifest (``data manifest --corpus megc-flow``) whose frames
are also at hand, apexmer computes the onset->apex flow in the chosen style
(``preprocess.flow.FlowConfig.style``) and compares it with the distributed image of the
same clip: both resized to the images' 28 x 28 and min-max scaled per channel (exactly what
the network input does: ``training.inputs.flow_to_input`` and ``FlowInput.normalize``), then
the Pearson correlation per channel (u, v, strain) over the pixels. Issue 17 measured 0.38,
0.23 and 0.19 for apexmer's own style on real clips, 0.05 or less between different clips;
``baseline`` reports the latter here (each clip's flow against the other clips' images).

The onset is the first frame of the clip's folder (the public images are onset->apex over
complete onset..offset sequences), the apex the label CSV's ``apex`` where it is one of the
frames, else the spotted one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apexmer.data.frames import open_frames
from apexmer.data.sample import Sample, SampleSet
from apexmer.errors import ApexmerError, DataError
from apexmer.face.landmarks import LandmarkDetector
from apexmer.preprocess.flow import FLOW_CHANNELS, FlowConfig
from apexmer.preprocess.pipeline import PreprocessConfig, process_clip
from apexmer.spotting.apex import SpotConfig, default_spot_method
from apexmer.training.inputs import FLOW_IMAGE_CHANNELS, flow_to_input, read_flow_file

IMAGE_SIZE = 28  # the distributed images' side


def minmax(x: np.ndarray) -> np.ndarray:
    """Per channel of (C, H, W), min-max to [0, 1] (a constant channel gives 0)."""
    x = np.asarray(x, dtype=np.float64)
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    return (x - lo) / np.maximum(span, 1e-12)


def as_image_input(features: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Flow features (H, W, n) named ``names`` -> (3, 28, 28) u, v, strain, min-max scaled."""
    resized = flow_to_input(features, names, FLOW_IMAGE_CHANNELS, IMAGE_SIZE)
    return minmax(resized.astype(np.float64))


def channel_correlations(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """Pearson correlation per channel of two (3, H, W) u, v, strain arrays (NaN where a
    channel is constant)."""
    out = {}
    for k, name in enumerate(FLOW_IMAGE_CHANNELS):
        a, b = ours[k].ravel(), theirs[k].ravel()
        if a.std() == 0 or b.std() == 0:
            out[name] = float("nan")
        else:
            out[name] = float(np.corrcoef(a, b)[0, 1])
    return out


def find_frames(sample: Sample, frames_root: Path) -> Path | None:
    """The clip's frame folder (or video) under ``frames_root``: ``<subject>/<clip>``,
    ``<dataset>/<subject>/<clip>`` or ``<clip>``, the first that exists."""
    for rel in (
        Path(sample.subject) / sample.clip,
        Path(sample.dataset) / sample.subject / sample.clip,
        Path(sample.clip),
    ):
        if (frames_root / rel).exists():
            return frames_root / rel
    return None


@dataclass
class FlowStyleCheck:
    """One row per compared clip, the clips skipped (with why), and the means."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    style: str = "ststnet"

    def means(self) -> dict[str, float]:
        """Mean per column over the clips where it is defined (NaN where none is)."""
        out = {}
        for k in (*FLOW_IMAGE_CHANNELS, "baseline"):
            values = np.array([r[k] for r in self.rows], dtype=np.float64)
            values = values[np.isfinite(values)]
            out[k] = float(values.mean()) if values.size else float("nan")
        return out


def check_flow_style(
    samples: SampleSet,
    frames_root: str | Path,
    detector: LandmarkDetector,
    flow: FlowConfig,
    *,
    progress: Callable[[str], None] | None = None,
) -> FlowStyleCheck:
    """Compare apexmer's flow (``flow``, its style included) with each sample's flow image
    (``flow_path``) for the samples whose frames are under ``frames_root``."""
    frames_root = Path(frames_root)
    if not frames_root.is_dir():
        raise DataError("frames folder not found", file=frames_root, fix="pass --frames FOLDER")
    config = PreprocessConfig(
        apex="labelled", spot=SpotConfig(method=default_spot_method()), flow=flow
    )
    result = FlowStyleCheck(style=flow.style)
    ours: list[np.ndarray] = []
    theirs: list[np.ndarray] = []
    for sample in samples:
        if sample.flow_path is None:
            result.skipped.append(f"{sample.key}: no flow image in the manifest")
            continue
        folder = find_frames(sample, frames_root)
        if folder is None:
            result.skipped.append(f"{sample.key}: no frames under {frames_root}")
            continue
        try:
            image, names = read_flow_file(Path(sample.flow_path))
            with open_frames(folder) as source:
                apex = sample.apex if sample.apex in source.numbers else None
                res = process_clip(
                    source,
                    None,
                    None,
                    detector=detector,
                    config=config,
                    apex_label=apex,
                    flow_roles=("apex",),
                )
        except (ApexmerError, ValueError, OSError) as exc:
            result.skipped.append(f"{sample.key}: {exc}")
            continue
        ours.append(as_image_input(res.flows["apex"], FLOW_CHANNELS))
        theirs.append(as_image_input(image, names))
        result.rows.append(
            {
                "key": sample.key,
                "frames": str(folder),
                "onset": res.onset,
                "apex": res.apex,
                "apex_source": res.apex_source,
                **channel_correlations(ours[-1], theirs[-1]),
            }
        )
        if progress:
            progress(sample.key)
    for i, row in enumerate(result.rows):  # against the other clips' images: chance level
        others = [
            np.nanmean(list(channel_correlations(ours[i], theirs[j]).values()))
            for j in range(len(theirs))
            if j != i
        ]
        row["baseline"] = float(np.mean(others)) if others else float("nan")
    return result
