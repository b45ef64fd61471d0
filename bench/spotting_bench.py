"""Apex spotting: speed on a 66-frame 640x480 clip (one core) and accuracy on synthetic motion.

The clip is matplotlib's grace_hopper.jpg placed into a 640x480 frame; a smooth local
"brow raise" (cv2.remap of a Gaussian bump) rises and falls with its peak at a known frame,
plus Gaussian sensor noise. Run: .venv/bin/python bench/spotting_bench.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

from apexmer.data.frames import ArrayFrames, FolderFrames  # noqa: E402
from apexmer.face import get_detector  # noqa: E402
from apexmer.spotting import SpotConfig, spot_clip  # noqa: E402
from apexmer.spotting.apex import curve_from_crops, roi_boxes, spot_apex  # noqa: E402

cv2.setNumThreads(1)


def base_frame() -> np.ndarray:
    """Grace Hopper scaled by 0.8 and rotated 5 degrees into a 640x480 BGR frame."""
    face = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    matrix = cv2.getRotationMatrix2D((256.0, 300.0), 5.0, 0.8)
    matrix[:, 2] += (320.0 - 256.0, 240.0 - 300.0)
    return cv2.warpAffine(face, matrix, (640, 480), borderMode=cv2.BORDER_REFLECT)


def make_clip(
    base: np.ndarray,
    centre: tuple[float, float],
    peak: int,
    n: int = 66,
    amp: float = 4.0,
    width: float = 5.0,
    noise: float = 2.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """Frames 0..n-1: a bump of ``amp`` px upward motion around ``centre``, peak at ``peak``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : base.shape[0], 0 : base.shape[1]].astype(np.float32)
    bump = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 25.0**2))
    frames = []
    for t in range(n):
        a = amp * np.exp(-0.5 * ((t - peak) / width) ** 2)
        map_y = (yy + a * bump).astype(np.float32)
        moved = cv2.remap(base, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        noisy = moved + noise * rng.standard_normal(moved.shape, dtype=np.float32)
        frames.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    return frames


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    detector = get_detector("dlib")
    base = base_frame()
    face = detector.detect(base)
    assert face is not None
    centre = tuple(face.points[[21, 22]].mean(0))
    frames = make_clip(base, centre, peak=30)
    source = ArrayFrames(frames)
    detector.detect(frames[0])  # load the models outside the timings

    onset_cfg = SpotConfig()
    t_onset, res = timed(lambda: spot_clip(source, detector=detector, config=onset_cfg))
    per_cfg = SpotConfig(landmarks="per_frame")
    t_per, res_per = timed(lambda: spot_clip(source, detector=detector, config=per_cfg), 1)
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(frames):
            cv2.imwrite(f"{tmp}/img{i + 1}.jpg", f)
        t_disk, res_disk = timed(
            lambda: spot_clip(FolderFrames(tmp), detector=detector, config=onset_cfg)
        )
    print("speed, 66 frames 640x480, one core (best of 3)")
    print(f"  onset landmarks, frames in memory : {t_onset:.3f} s  apex {res.apex}")
    print(f"  onset landmarks, JPEG decode incl.: {t_disk:.3f} s  apex {res_disk.apex - 1}")
    print(
        f"  per-frame landmarks, in memory    : {t_per:.3f} s  apex {res_per.apex}  "
        f"({t_per / t_onset:.1f}x the onset-only time)"
    )

    # accuracy of the pure core: |spotted - injected peak| over peaks and noise seeds
    boxes = roi_boxes(face.points, base.shape, onset_cfg.roi_size)
    print("accuracy (mean |error| in frames, 4 peaks x 3 seeds, lag 3)")
    for noise in (2.0, 6.0):
        crops = {}
        for peak in (12, 25, 38, 50):
            for seed in range(3):
                clip = make_clip(base, centre, peak, noise=noise, amp=2.0, seed=seed)
                crops[peak, seed] = np.stack(
                    [
                        np.stack(
                            [
                                cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w]
                                for x, y, w, h in boxes
                            ]
                        )
                        for f in clip
                    ]
                ).astype(np.float32)
        for offset_term in (True, False):
            for blur in (0.0, 1.0, 2.0):
                cfg = SpotConfig(offset_term=offset_term, blur=blur)
                errors = [
                    spot_apex(curve_from_crops(c, cfg)) - peak for (peak, _), c in crops.items()
                ]
                print(
                    f"  noise {noise:.0f}  offset_term {offset_term!s:5}  blur {blur:.0f}: "
                    f"mean |err| {np.mean(np.abs(errors)):.2f}  mean err "
                    f"{np.mean(errors):+.2f}"
                )


if __name__ == "__main__":
    main()
