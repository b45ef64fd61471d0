"""Interval spotting on synthetic long videos: F1 (IoU >= 0.5), speed and memory, one core.

    PYTHONPATH=src python bench/long_video_spotting.py [--subjects 2] [--videos 2]
        [--seconds 30] [--memory-seconds 30 120] [--mp4-minutes 10]

Writes a synthetic CAS(ME)^2-layout corpus (``apexmer.data.synth_long``, 640x480, 30 fps:
micro 0.2-0.5 s, macro 0.7-3.5 s, blinks, slow head translation and rotation, noise),
spots every video from its JPEG frames with ``spot_intervals`` (torch and OpenCV on one
thread, landmarks included) and scores it the MEGC way (``evaluation.intervals``).
Baselines in the same process: Moilanen's threshold (mean + p(max - mean), the MEGC
baselines') on the same motion signal, and decoding the frames alone (the speed floor).
Memory: each ``--memory-seconds`` video is spotted in a fresh process; its peak RSS is
printed (bounded memory = the same peak for a longer video). ``--mp4-minutes M`` also
spots an M-minute 640x480 30 fps mp4 (a synthetic 30 s video played over and over, written
with OpenCV) through the streaming video source, in a fresh process: issue 12 asks for a
10-minute video in under 1 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from apexmer.data.frames import FolderFrames, iter_frames, list_frames, open_frames
from apexmer.data.synth_long import write_long_corpus
from apexmer.evaluation.intervals import Span, pool_scores, score_video
from apexmer.face.landmarks import get_detector
from apexmer.spotting import IntervalConfig, spot_intervals
from apexmer.spotting.intervals import intervals_from_motion


def one_core() -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure_one(path: str) -> None:
    """Child process: spot one frame folder or video, print frames, seconds and peak RSS."""
    one_core()
    with open_frames(path, fps=30.0) as source:
        cpu = time.process_time()
        spot_intervals(source, fps=30.0)
        print(len(source.numbers), time.process_time() - cpu, peak_rss_mb())


def write_looped_mp4(folder: Path, out: Path, minutes: float) -> Path:
    """An mp4 of ``minutes`` at 30 fps: the frames of ``folder`` played over and over."""
    files = [p for _, p in list_frames(folder)]
    first = cv2.imread(str(files[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    try:  # frames read from disk one at a time: the writer holds none of them
        for i in range(round(minutes * 60 * 30)):
            writer.write(cv2.imread(str(files[i % len(files)])))
    finally:
        writer.release()
    return out


def measure_in_child(path: Path) -> tuple[int, float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure-one", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def f1_text(scores) -> str:
    parts = []
    for kind in ("micro", "macro", "overall"):
        c = scores.pooled[kind]
        f1 = "n/a" if c.f1 is None else f"{c.f1:.3f}"
        parts.append(f"{kind} F1 {f1} (TP {c.tp} FP {c.fp} FN {c.fn})")
    return "  ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--videos", type=int, default=2, help="videos per subject")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1, help="seed 0 was used to tune")
    parser.add_argument("--memory-seconds", type=float, nargs="*", default=[30.0, 120.0])
    parser.add_argument("--mp4-minutes", type=float, default=0.0)
    parser.add_argument("--measure-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one:
        measure_one(args.measure_one)
        return
    one_core()
    with tempfile.TemporaryDirectory(prefix="apexmer-lv-") as tmp:
        info = write_long_corpus(
            Path(tmp) / "corpus", args.subjects, args.videos, args.seed, seconds=args.seconds
        )
        truth = info.ground_truth
        detector = get_detector()
        config = IntervalConfig()
        moilanen = dataclasses.replace(config, threshold="moilanen")
        ours, baseline = [], []
        frames = spot_s = decode_s = spot_cpu = decode_cpu = 0.0
        for plan in info.plans:
            folder = info.frames_root / plan.subject / plan.folder
            rows = truth[(truth.folder.str.endswith(plan.folder)) & (truth.kind != "blink")]
            coded = [Span(int(r.onset), int(r.offset), r.kind) for r in rows.itertuples()]
            source = FolderFrames(folder)
            start, cpu = time.perf_counter(), time.process_time()
            for _ in iter_frames(source, source.numbers):
                pass
            decode_s += time.perf_counter() - start
            decode_cpu += time.process_time() - cpu
            start, cpu = time.perf_counter(), time.process_time()
            result = spot_intervals(source, fps=plan.fps, detector=detector, config=config)
            spot_s += time.perf_counter() - start
            spot_cpu += time.process_time() - cpu
            frames += len(source.numbers)
            spotted = [Span(i.onset, i.offset, i.kind) for i in result.intervals]
            ours.append(score_video(plan.folder, plan.subject, coded, spotted))
            found = intervals_from_motion(result.motion, plan.fps, moilanen).intervals
            base = [Span(i.onset, i.offset, i.kind) for i in found]
            baseline.append(score_video(plan.folder, plan.subject, coded, base))
        n_micro = int((truth.kind == "micro").sum())
        n_macro = int((truth.kind == "macro").sum())
        print(
            f"{len(info.plans)} synthetic videos x {args.seconds:g} s, 640x480 at 30 fps: "
            f"{n_micro} micro, {n_macro} macro, {int((truth.kind == 'blink').sum())} blinks"
        )
        print(f"  spot_intervals (median + {config.mad_k:g} MAD): {f1_text(pool_scores(ours))}")
        print(
            f"  Moilanen threshold (p = {moilanen.moilanen_p:g}): {f1_text(pool_scores(baseline))}"
        )
        print(
            f"  speed, one thread, JPEG decode + landmarks + flow: {frames / spot_s:.1f} fps "
            f"wall clock, {frames / spot_cpu:.1f} fps of CPU time "
            f"({spot_cpu / frames * 1000:.1f} CPU ms/frame); decoding alone "
            f"{frames / decode_cpu:.1f} fps of CPU time; spotting costs "
            f"{spot_cpu / decode_cpu:.2f}x the decoding ({os.getloadavg()[0]:.1f} load average)"
        )
        for seconds in args.memory_seconds:
            write_long_corpus(Path(tmp) / f"mem{seconds:g}", 1, 1, args.seed + 1, seconds=seconds)
            folder = next((Path(tmp) / f"mem{seconds:g}" / "rawpic").glob("*/*"))
            n, seconds_taken, rss = measure_in_child(folder)
            print(
                f"  memory: {seconds:g} s video ({n} frames) peak RSS {rss:.0f} MB "
                f"({n / seconds_taken:.1f} fps of CPU time in that process)"
            )
        if args.mp4_minutes:
            first = info.frames_root / info.plans[0].subject / info.plans[0].folder
            video = write_looped_mp4(first, Path(tmp) / "long.mp4", args.mp4_minutes)
            n, seconds_taken, rss = measure_in_child(video)
            print(
                f"  memory: {args.mp4_minutes:g}-minute mp4 ({n} frames, "
                f"{video.stat().st_size / 2**20:.0f} MB file) peak RSS {rss:.0f} MB "
                f"({n / seconds_taken:.1f} fps of CPU time, streamed)"
            )


if __name__ == "__main__":
    main()
