"""Apex spotting inside a known clip: the paper's eq. 5-6 against the ROI-motion method.

    PYTHONPATH=src python bench/apex_methods.py [--clips 6] [--lengths 15 30 60]
        [--noise 2 4 8]

Synthetic clips (``apexmer.data.synth.render_clip``: a subject's face from the real photo,
one expression rising along a raised cosine to the coded apex and falling back, global
drift, sensor noise of sigma grey levels) at 640x480, ``--clips`` per length and noise
(subjects, emotions, apex position 0.3-0.7 of the clip and amplitude 3-6 px drawn from a
fixed seed). Each clip is spotted with ``SpotConfig()`` (the paper, the default), the
paper with ``denominator="symmetric"`` and ``method="motion"``; errors are spotted minus
coded apex in frames.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from apexmer.data.frames import ArrayFrames
from apexmer.data.synth import AU_CODES, FIVE_CLASSES, render_clip, subject_identity
from apexmer.face.landmarks import get_detector
from apexmer.spotting.apex import SpotConfig, spot_clip

METHODS = {
    "paper (eq. 5-6, default)": SpotConfig(),
    "paper, symmetric denominator": SpotConfig(denominator="symmetric"),
    "motion (ROI flow vs onset)": SpotConfig(method="motion"),
}


def summary(errors: list[int]) -> str:
    e = np.abs(np.asarray(errors))
    return (
        f"MAE {e.mean():5.2f}  within 1/3/5: {(e <= 1).mean():.2f} / {(e <= 3).mean():.2f} / "
        f"{(e <= 5).mean():.2f}  mean signed {np.mean(errors):+.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=6, help="clips per length and noise")
    parser.add_argument("--lengths", type=int, nargs="+", default=[15, 30, 60])
    parser.add_argument("--noise", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    detector = get_detector()
    faces = [subject_identity(args.seed, s) for s in range(1, 5)]
    errors = {(m, n, s): [] for m in METHODS for n in args.lengths for s in args.noise}
    seconds = dict.fromkeys(METHODS, 0.0)
    for length in args.lengths:
        for noise in args.noise:
            for k in range(args.clips):
                face = faces[k % len(faces)]
                emotion = FIVE_CLASSES[int(rng.integers(len(FIVE_CLASSES)))]
                apex = int(np.clip(round(rng.uniform(0.3, 0.7) * (length - 1)), 1, length - 2))
                frames = render_clip(
                    face.image,
                    face.landmarks,
                    emotion,
                    length,
                    apex,
                    float(rng.uniform(3.0, 6.0)),
                    rng,
                    action_units=AU_CODES[emotion][0],
                    noise_sigma=noise,
                )
                source = ArrayFrames(frames)
                onset_face = detector.detect(frames[0])
                for name, config in METHODS.items():
                    start = time.perf_counter()
                    res = spot_clip(source, detector=detector, config=config, face=onset_face)
                    seconds[name] += time.perf_counter() - start
                    errors[name, length, noise].append(res.apex_index - apex)
    n_clips = len(args.lengths) * len(args.noise) * args.clips
    print(f"{n_clips} synthetic clips at 640x480 (seed {args.seed}), error = spotted - coded apex")
    for name in METHODS:
        pooled = [e for (m, _, _), v in errors.items() if m == name for e in v]
        print(f"{name:30} all: {summary(pooled)}  ({seconds[name] / n_clips * 1000:.0f} ms/clip)")
        for length in args.lengths:
            for noise in args.noise:
                print(
                    f"  {length:3d} frames, noise {noise:g}: {summary(errors[name, length, noise])}"
                )


if __name__ == "__main__":
    main()
