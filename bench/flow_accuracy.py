"""How exact is each optical flow on a face with a KNOWN sub-pixel motion, and how fast?

    PYTHONPATH=src .venv/bin/python bench/flow_accuracy.py [--pairs 6] [--repeats 3]

Each pair: the real photograph the synthetic corpus starts from (matplotlib's Grace Hopper,
dlib landmarks), aligned and cropped to 224 x 224 as preprocessing does (without the
background mask, so every pixel has texture and a true flow), then warped by a smooth field
(a sum of Gaussian bumps centred on brows, eye corners, mouth and chin, peak magnitude drawn
in 0.2-2 px) with ``warp_by_flow`` (bicubic; the field is exactly the prev -> next flow),
and independent sensor noise (sigma 2 grey levels) added to both frames.

Printed: mean endpoint error (EPE, px) per algorithm over the face region (the landmark hull)
and over the whole crop, and the time of one pair on one core (``cv2.setNumThreads(1)``,
median of ``--repeats``) with its ratio to OpenCV's default TV-L1, measured in the same run.
Then the float16 storage error, and nose-median removal: EPE of the flow against the local
(expression) field, with and without removal, on the same pairs and on pairs with a global
shift of 0.5-1 px added (head motion). Last, what flow adds to preprocessing:
``process_clip`` (spotting, three 224 px crops, two flows) on ``--clips`` clips of a
synthetic corpus, one core, per algorithm against no flow (best of 2 rounds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import cv2
import numpy as np

from apexmer.data.casme2 import read_casme2
from apexmer.data.frames import open_frames
from apexmer.data.synth import base_face, write_synthetic_corpus
from apexmer.face.align import AlignConfig, align_face, face_mask, transform_points
from apexmer.face.landmarks import get_detector
from apexmer.preprocess.flow import (
    DISParams,
    FarnebackParams,
    FlowConfig,
    TVL1Params,
    compute_flow,
    flow_features,
    global_motion,
    remove_global_motion,
    warp_by_flow,
)
from apexmer.preprocess.pipeline import PreprocessConfig, process_clip

SIZE = 224
NOISE_SIGMA = 2.0
PEAK_PX = (0.2, 2.0)
SHIFT_PX = (0.5, 1.0)
# bump centres: brows, eye corners, mouth corners and lips, chin (iBUG-68 indices)
CENTRES = (17, 19, 21, 22, 24, 26, 36, 39, 42, 45, 48, 51, 54, 57, 8)
OPENCV_TVL1 = TVL1Params(
    tau=0.25,
    lambda_=0.15,
    theta=0.3,
    scales=5,
    warps=5,
    epsilon=0.01,
    inner_iterations=30,
    outer_iterations=10,
    scale_step=0.8,
    median_filtering=5,
)
OPENCV_DIS = DISParams(finest_scale=1)  # OpenCV's MEDIUM preset as is


def algorithms() -> dict[str, FlowConfig]:
    return {
        "tvl1 (OpenCV defaults)": FlowConfig("tvl1", tvl1=OPENCV_TVL1),
        "tvl1 (tuned, apexmer default)": FlowConfig("tvl1"),
        "dis (OpenCV MEDIUM)": FlowConfig("dis", dis=OPENCV_DIS),
        "dis (apexmer default)": FlowConfig("dis"),
        "farneback": FlowConfig("farneback", farneback=FarnebackParams()),
    }


def face_crop() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo's 224 x 224 crop (no mask), its landmarks in crop pixels, face region."""
    face = base_face()
    config = AlignConfig(size=SIZE, mask=False)
    crop, matrix = align_face(face.image, face.landmarks, config)
    points = transform_points(face.landmarks, matrix)
    region = face_mask(points, replace(config, feather=0.0)) > 0.5
    return crop, points, region


def smooth_field(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE, 2) float32: Gaussian bumps at expression landmarks, peak in PEAK_PX."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    field = np.zeros((SIZE, SIZE, 2))
    for index in rng.choice(CENTRES, size=8, replace=False):
        cx, cy = points[index]
        sigma = rng.uniform(10.0, 25.0)
        angle = rng.uniform(0, 2 * np.pi)
        bump = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
        field += bump[..., None] * np.array([np.cos(angle), np.sin(angle)])
    peak = np.hypot(field[..., 0], field[..., 1]).max()
    return (field * rng.uniform(*PEAK_PX) / peak).astype(np.float32)


def noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.round(image + rng.normal(0, NOISE_SIGMA, image.shape)), 0, 255).astype(
        np.uint8
    )


def make_pairs(n: int, seed: int = 0, shift: bool = False):
    """[(prev, next, true flow, local field)] of ``n`` pairs."""
    crop, points, _ = face_crop()
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        local = smooth_field(points, rng)
        truth = local.copy()
        if shift:
            angle = rng.uniform(0, 2 * np.pi)
            truth += rng.uniform(*SHIFT_PX) * np.array([np.cos(angle), np.sin(angle)], np.float32)
        nxt = warp_by_flow(crop, truth)
        pairs.append((noisy(crop, rng), noisy(nxt, rng), truth, local))
    return pairs, points


def epe(flow: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    error = np.hypot(*(flow - truth).transpose(2, 0, 1))
    return float(error[region].mean() if region is not None else error.mean())


def seconds_per_pair(config: FlowConfig, prev: np.ndarray, nxt: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compute_flow(prev, nxt, config)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def seconds_per_clip(configs: dict[str, FlowConfig | None], n_clips: int) -> dict[str, float]:
    """``process_clip`` seconds per clip for each flow setting: same clips, same run, after
    one warm-up clip; the best of 2 interleaved rounds (the machine is shared)."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_synthetic_corpus(tmp, subjects=1, clips_per_subject=n_clips + 1, seed=0)
        samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all").samples
        detector = get_detector("dlib")

        def run(flow: FlowConfig | None, clips: list) -> float:
            start = time.perf_counter()
            for s in clips:
                source = open_frames(s.frames)
                config = PreprocessConfig(flow=flow)
                process_clip(
                    source, s.onset, s.offset, detector=detector, config=config, apex_label=s.apex
                )
            return (time.perf_counter() - start) / len(clips)

        run(None, samples[:1])
        rounds = [{name: run(flow, samples[1:]) for name, flow in configs.items()} for _ in "ab"]
    return {name: min(r[name] for r in rounds) for name in configs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clips", type=int, default=6, help="0: skip the preprocessing cost")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    pairs, points = make_pairs(args.pairs)
    _, _, region = face_crop()
    rows = []
    for name, config in algorithms().items():
        flows = [compute_flow(p, n, config) for p, n, _, _ in pairs]
        truths = [t for _, _, t, _ in pairs]
        rows.append(
            (
                name,
                np.mean([epe(f, t, region) for f, t in zip(flows, truths, strict=True)]),
                np.mean([epe(f, t) for f, t in zip(flows, truths, strict=True)]),
                seconds_per_pair(config, pairs[0][0], pairs[0][1], args.repeats),
            )
        )
    zero = np.mean([epe(np.zeros_like(t), t, region) for _, _, t, _ in pairs])
    base = rows[0][3]
    print(f"{args.pairs} pairs of 224 x 224, peak motion {PEAK_PX} px, noise sigma {NOISE_SIGMA}")
    print(f"(a zero flow scores EPE {zero:.3f} px on the face)")
    print("algorithm,epe_face_px,epe_crop_px,seconds_per_pair,speed_vs_opencv_tvl1")
    for name, face, whole, seconds in rows:
        print(f"{name},{face:.3f},{whole:.3f},{seconds:.4f},{base / seconds:.1f}x")
    features = [flow_features(compute_flow(p, n, FlowConfig())) for p, n, _, _ in pairs]
    cast = max(float(np.abs(f.astype(np.float16) - f).max()) for f in features)
    top = max(float(np.abs(f).max()) for f in features)
    print(f"float16 storage of the (u, v, strain, magnitude) features: max abs error {cast:.1e}")
    print(f"(largest value {top:.2f})")

    shifted, _ = make_pairs(args.pairs, seed=1, shift=True)
    print(f"\nnose-median removal; head motion = a global shift of {SHIFT_PX} px")
    bias = np.mean([np.hypot(*global_motion(local, points)) for _, _, _, local in pairs])
    print(f"(the expression field itself has a median of {bias:.3f} px on the nose bridge:")
    print(" the error removal adds where the expression reaches the nose)")
    print("algorithm,head_motion,epe_face_raw_px,epe_face_nose_median_px")
    for name, config in algorithms().items():
        for label, data in (("none", pairs), ("shift", shifted)):
            raw, removed = [], []
            for prev, nxt, _, local in data:
                flow = compute_flow(prev, nxt, config)
                raw.append(epe(flow, local, region))
                removed.append(epe(remove_global_motion(flow, points), local, region))
            print(f"{name},{label},{np.mean(raw):.3f},{np.mean(removed):.3f}")

    if args.clips:
        flows = {"none": None, "tvl1": FlowConfig(), "dis": FlowConfig("dis")}
        flows["farneback"] = FlowConfig("farneback")
        cost = seconds_per_clip(flows, args.clips)
        print(f"\npreprocessing one clip (process_clip, 224 px), {args.clips} synthetic clips")
        print("flow,seconds_per_clip,vs_no_flow")
        for name, seconds in cost.items():
            print(f"{name},{seconds:.3f},{seconds / cost['none']:.2f}x")


if __name__ == "__main__":
    main()
