"""Synthetic long videos and MEGC scoring: throughput, memory, matching cost (one core).

    PYTHONPATH=src python bench/long_video_eval.py [--seconds 20] [--memory-seconds 10 40]

1. ``synth --long`` throughput: one 640x480 30 fps video rendered frame by frame
   (``synth_long.render_long_video``), then rendered and written as JPEG frames, against
   real time (30 fps) and against the floor of writing the same number of JPEG frames of a
   constant image.
2. Memory: a ``--memory-seconds`` video written in a fresh process each; peak RSS printed
   (frames are streamed to disk, so a longer video should need no more).
3. Scoring: a SAMM-LV-sized corpus (147 videos, 502 coded intervals, 50 spotted per
   video) scored with ``evaluation.intervals`` (maximum one-to-one matching) against the
   greedy-by-IoU matching most MEGC scripts use, same pairs, same process.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from apexmer.data.synth import JPEG_QUALITY, subject_identity
from apexmer.data.synth_long import plan_long_video, render_long_video, write_long_corpus
from apexmer.evaluation.intervals import Span, iou, pool_scores, score_video


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(seconds: float, out: str) -> None:
    cv2.setNumThreads(1)
    write_long_corpus(out, 1, 1, seconds=seconds, micro=2, macro=1)
    print(peak_rss_mb())


def synth_throughput(seconds: float) -> None:
    plan = plan_long_video(0, 1, 0, seconds=seconds, micro=3, macro=2)
    identity = subject_identity(0, 1, plan.size)
    start = time.perf_counter()
    for _ in render_long_video(plan, identity):
        pass
    render = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for k, frame in enumerate(render_long_video(plan, identity)):
            _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            Path(tmp, f"img{k + 1}.jpg").write_bytes(data.tobytes())
        written = time.perf_counter() - start
        start = time.perf_counter()
        for k in range(plan.n_frames):
            _, data = cv2.imencode(".jpg", identity.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            Path(tmp, f"floor{k + 1}.jpg").write_bytes(data.tobytes())
        floor = time.perf_counter() - start
    n = plan.n_frames
    print(f"synth --long, {n} frames 640x480 ({seconds:g} s at 30 fps), one thread:")
    print(f"  render only        {n / render:7.1f} fps  ({n / render / 30:.2f} x real time)")
    print(f"  render + JPEG file {n / written:7.1f} fps  ({n / written / 30:.2f} x real time)")
    print(
        f"  floor: JPEG files of one image {n / floor:7.1f} fps; rendering costs "
        f"{written / floor:.2f} x the floor"
    )


def memory(seconds_list: list[float]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in seconds_list:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(seconds), str(Path(tmp, str(seconds)))],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            print(f"  {seconds:g} s video: peak RSS {float(out.stdout.split()[-1]):.0f} MB")


def greedy(coded: list[Span], spotted: list[Span]) -> int:
    pairs = sorted(
        ((iou(c, s), i, j) for i, c in enumerate(coded) for j, s in enumerate(spotted)),
        reverse=True,
    )
    used_c, used_s, tp = set(), set(), 0
    for value, i, j in pairs:
        if value < 0.5:
            break
        if i not in used_c and j not in used_s:
            used_c.add(i)
            used_s.add(j)
            tp += 1
    return tp


def scoring() -> None:
    rng = np.random.default_rng(0)
    videos = []
    counts = np.bincount(rng.integers(0, 147, 502 - 147), minlength=147) + 1  # >= 1 per video
    for n in counts:
        onsets = np.sort(rng.integers(0, 20000, n))
        coded = [Span(int(o), int(o + rng.integers(20, 400)), "micro") for o in onsets]
        spotted = [Span(c.onset + int(rng.integers(-10, 10)), c.offset, "micro") for c in coded]
        spotted = [s for s in spotted if s.onset <= s.offset]
        starts = rng.integers(0, 20000, 50 - len(spotted))
        spotted += [Span(int(o), int(o + rng.integers(10, 300)), "micro") for o in starts]
        videos.append((coded, spotted))
    start = time.perf_counter()
    scores = pool_scores([score_video(str(k), "s", c, s) for k, (c, s) in enumerate(videos)])
    ours = time.perf_counter() - start
    start = time.perf_counter()
    tp_greedy = sum(greedy(c, s) for c, s in videos)
    base = time.perf_counter() - start
    print(f"scoring 147 videos, 502 coded, {sum(len(s) for _, s in videos)} spotted intervals:")
    print(
        f"  maximum matching {ours * 1000:.0f} ms (TP {scores.pooled['micro'].tp}); greedy "
        f"by IoU {base * 1000:.0f} ms (TP {tp_greedy}); ratio {ours / base:.2f}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(float(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--memory-seconds", type=float, nargs="*", default=[10.0, 40.0])
    args = parser.parse_args()
    cv2.setNumThreads(1)
    synth_throughput(args.seconds)
    print("memory of synth --long (fresh process each):")
    memory(args.memory_seconds)
    scoring()


if __name__ == "__main__":
    main()
