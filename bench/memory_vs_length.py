"""Peak memory of ``Predictor.predict`` and of a web upload vs the video's length.

Each case runs in a fresh subprocess that loads the Predictor, reads its resident memory
(VmRSS), runs one prediction and reads its high-water mark (VmHWM): the growth is what the
prediction itself cost. Videos are 640x480 mp4 (mp4v) made of a synthetic clip (frames of
``apexmer.data.synth.render_clip``, repeated back and forth to the length); the model is an
untrained ``seresnext_tiny`` checkpoint (the network's cost does not depend on the length).
The upload case posts the mp4 to the web app (in-process TestClient) with the frame and
duration caps lifted (the per-request memory budget, 1 GiB, stays), and also reports VmRSS
after the request (memory released?). A last row uploads a 1920x1080 video of
``--hd-frames`` frames (the issue's 2.8 MB, 170-frame upload took 2.36 GB).

    .venv/bin/python bench/memory_vs_length.py [--lengths 100 500 2000] [--no-serve]
        [--hd-frames 170] [--src PATH]   # another checkout's src/, e.g. before a change
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

CLASSES = ["disgust", "happiness", "others", "repression", "surprise"]
SIZE = (640, 480)


def write_video(path: Path, n_frames: int, size: tuple[int, int] = SIZE) -> Path:
    from apexmer.data.synth import make_identity, render_clip

    identity = make_identity(7, size)
    clip = render_clip(
        identity.image, identity.landmarks, "happiness", 30, 14, 5.0, np.random.default_rng(7)
    )
    cycle = clip + clip[-2:0:-1]  # forth and back: no jump at the seam
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(n_frames):
        writer.write(cycle[i % len(cycle)])
    writer.release()
    return path


def write_checkpoint(out: Path) -> Path:
    import torch

    from apexmer.config import DataConfig
    from apexmer.face.align import AlignConfig
    from apexmer.models.registry import create_model
    from apexmer.preprocess.pipeline import PreprocessConfig
    from apexmer.training.checkpoint import save_checkpoint
    from apexmer.training.inputs import input_metadata

    torch.manual_seed(0)
    meta = {
        "architecture": "seresnext_tiny",
        "classes": CLASSES,
        "num_classes": len(CLASSES),
        "input_size": 32,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "frame": "apex",
        "input": input_metadata(DataConfig(input_size=32)),  # the apex crop, RGB
        "config": {"train": {"threads": 1, "eval_batch_size": 8}},
        "preprocess": PreprocessConfig(align=AlignConfig(size=64)).to_dict(),
    }
    return save_checkpoint(create_model("seresnext_tiny", num_classes=len(CLASSES)), meta, out)


def _status(field: str) -> int:
    """A /proc/self/status memory field in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(case: str, video: Path, checkpoint: Path) -> dict[str, float]:
    """One measurement in this (fresh) process."""
    import gc

    import torch

    from apexmer.inference import Predictor

    torch.set_num_threads(1)
    predictor = Predictor.from_checkpoint(checkpoint)
    predictor.detector()  # the dlib models load before the baseline
    if case == "predict":
        before = _status("VmRSS")
        table = predictor.predict(video)
        assert table["error"].isna().all(), table["error"].tolist()
    else:
        import dataclasses
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using `httpx` with")
            from fastapi.testclient import TestClient
        from apexmer.serving.app import ServeLimits, create_app

        limits = dataclasses.replace(
            ServeLimits(), max_frames=10**6, max_duration_s=1e6, max_upload_bytes=2**30
        )
        data = video.read_bytes()
        with TestClient(create_app(predictor, limits)) as client:
            client.get("/api/health")
            before = _status("VmRSS")
            resp = client.post("/api/predict", files={"file": ("v.mp4", data, "video/mp4")})
            assert resp.status_code == 200, resp.text
            del resp
            gc.collect()
            after = _status("VmRSS")
    peak = _status("VmHWM")
    out = {"baseline_mb": before / 2**20, "peak_mb": peak / 2**20}
    out["growth_mb"] = (peak - before) / 2**20
    if case == "serve":
        out["after_mb"] = after / 2**20
    return out


def run_case(case: str, video: Path, checkpoint: Path, src: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--child", case, str(video), str(checkpoint)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} {video.name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument("--hd-frames", type=int, default=170, help="0: no 1080p upload")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "VIDEO", "CHECKPOINT"))
    args = parser.parse_args()
    if args.child:
        case, video, checkpoint = args.child
        print(json.dumps(child(case, Path(video), Path(checkpoint))))
        return
    cases = ["predict"] + ([] if args.no_serve else ["serve"])
    with tempfile.TemporaryDirectory(prefix="apexmer-membench-") as tmp:
        checkpoint = write_checkpoint(Path(tmp) / "model")
        print(f"src: {args.src}; 640x480 mp4v videos; growth = VmHWM - VmRSS before the call")
        print(f"{'case':8s} {'frames':>7s} {'MB':>6s} {'base':>7s} {'peak':>7s} {'growth':>7s}")
        growth: dict[str, list[float]] = {c: [] for c in cases}
        for n in args.lengths:
            video = write_video(Path(tmp) / f"v{n}.mp4", n)
            size = video.stat().st_size / 2**20
            for case in cases:
                r = run_case(case, video, checkpoint, args.src)
                growth[case].append(r["growth_mb"])
                extra = f"  after request {r['after_mb']:.0f}" if case == "serve" else ""
                print(
                    f"{case:8s} {n:7d} {size:6.1f} {r['baseline_mb']:7.0f} {r['peak_mb']:7.0f} "
                    f"{r['growth_mb']:7.0f}{extra}",
                    flush=True,
                )
        if args.hd_frames and not args.no_serve:
            n = args.hd_frames
            video = write_video(Path(tmp) / "hd.mp4", n, (1920, 1080))
            r = run_case("serve", video, checkpoint, args.src)
            print(
                f"{'serve':8s} {n:7d} {video.stat().st_size / 2**20:6.1f} {r['baseline_mb']:7.0f} "
                f"{r['peak_mb']:7.0f} {r['growth_mb']:7.0f}  after request {r['after_mb']:.0f}"
                "  (1920x1080)"
            )
        for case in cases:
            first, last = growth[case][0], growth[case][-1]
            print(
                f"{case}: growth {args.lengths[-1]} / {args.lengths[0]} frames = "
                f"{last / max(first, 1e-9):.2f}x ({first:.0f} -> {last:.0f} MB)"
            )


if __name__ == "__main__":
    main()
