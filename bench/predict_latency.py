"""Latency of Predictor.predict on one 100-frame 640x480 clip, split by stage.

Stages: decode (video -> frames), landmarks (dlib detection + 68 points), spotting (ROI
differences, eq. 5-6), alignment (similarity warp + mask of three frames), network (one
forward pass). The Predictor reports decode / landmarks / spot_align / network per clip;
spot_align is split here by timing ``spot_clip`` inside ``process_clip``.

    .venv/bin/python bench/predict_latency.py [--repeats 3] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import apexmer.preprocess.pipeline as pipeline
from apexmer.data.synth import make_identity, render_clip
from apexmer.face.align import AlignConfig
from apexmer.inference import Predictor
from apexmer.models.registry import create_model
from apexmer.preprocess.pipeline import PreprocessConfig

STAGES = ("decode", "landmarks", "spotting", "alignment", "network", "total")
CLASSES = ["disgust", "happiness", "others", "repression", "surprise"]
_SPOT = {"seconds": 0.0}
_real_spot_clip = pipeline.spot_clip


def _timed_spot_clip(source, onset, offset, detector, config):
    """spot_clip minus the decode and landmark time spent inside it (own counters)."""
    d0, s0, t0 = detector.seconds, source.seconds, time.perf_counter()
    result = _real_spot_clip(source, onset, offset, detector, config)
    elapsed = time.perf_counter() - t0
    _SPOT["seconds"] += elapsed - (detector.seconds - d0) - (source.seconds - s0)
    return result


def write_clip(folder: Path, n_frames: int = 100, size: tuple[int, int] = (640, 480)) -> Path:
    identity = make_identity(7, size)
    frames = render_clip(
        identity.image,
        identity.landmarks,
        "happiness",
        n_frames,
        n_frames // 2,
        5.0,
        np.random.default_rng(7),
    )
    path = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def make_predictor(arch: str, size: int, device: str) -> Predictor:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=len(CLASSES))  # untrained: same cost
    meta = {
        "architecture": arch,
        "classes": CLASSES,
        "num_classes": len(CLASSES),
        "input_size": size,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "frame": "apex",
        "preprocess": PreprocessConfig(align=AlignConfig(size=size)).to_dict(),
    }
    return Predictor(model, meta, device=device)


def measure(predictor: Predictor, clip: Path, repeats: int) -> dict[str, float]:
    """Median seconds per stage over ``repeats`` runs after one warm-up."""
    runs: dict[str, list[float]] = {s: [] for s in STAGES}
    for i in range(repeats + 1):
        _SPOT["seconds"] = 0.0
        start = time.perf_counter()
        result = predictor.predict_clips(str(clip))[0]
        wall = time.perf_counter() - start
        if i == 0:
            continue  # warm-up: model files, allocator
        t = result.timings
        spotting = _SPOT["seconds"]
        stage = {
            "decode": t["decode"],
            "landmarks": t["landmarks"],
            "spotting": spotting,
            "alignment": t["spot_align"] - spotting,
            "network": t["network"],
            "total": wall,
        }
        for key, value in stage.items():
            runs[key].append(value)
    return {k: statistics.median(v) for k, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipeline.spot_clip = _timed_spot_clip
    models = [("seresnext50_32x4d", 224), ("seresnext_tiny", 224)]
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp))
        print(
            f"clip: 100 frames 640x480 mp4; device {args.device}; torch threads "
            f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}; "
            f"median of {args.repeats} runs after a warm-up"
        )
        results = {
            f"{a}@{s}": measure(make_predictor(a, s, args.device), clip, args.repeats)
            for a, s in models
        }
    names = list(results)
    print(f"\n| stage | {' | '.join(n + ' ms' for n in names)} | share ({names[0]}) |")
    print("|---|" + "---:|" * (len(names) + 1))
    for stage in STAGES:
        cells = " | ".join(f"{results[n][stage] * 1000:.1f}" for n in names)
        share = results[names[0]][stage] / results[names[0]]["total"] * 100
        print(f"| {stage} | {cells} | {share:.0f}% |")
    big, tiny = results[names[0]], results[names[1]]
    print(f"\nnetwork {names[0]} / {names[1]}: {big['network'] / tiny['network']:.1f}x")
    print(f"total {names[0]} / {names[1]}: {big['total'] / tiny['total']:.2f}x")
    print(
        f"landmarks / (spotting + alignment): "
        f"{big['landmarks'] / (big['spotting'] + big['alignment']):.1f}x"
    )
    print(
        f"per frame: decode {big['decode'] * 10:.2f} ms, whole pipeline w/o network "
        f"{(big['total'] - big['network']) * 10:.2f} ms"
    )


if __name__ == "__main__":
    main()
