"""Cost per frame of the frame check ``data summary --root`` runs on every frame of
onset..offset (``frames.image_file_issue``: magic bytes, header, end), against a full
decode (``frames.read_image``) of the same files.

    PYTHONPATH=src .venv/bin/python bench/frame_check_cost.py [--frames 300 --size 640x480]

Writes ``--frames`` smooth random JPEGs (photograph-like compression) once, then times
each check over all of them, best of ``--repeat`` passes (the files are in the page cache:
this is the CPU cost; a cold disk adds one read of each file's first and last bytes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from apexmer.data.frames import image_file_issue, read_image


def per_frame_ms(check: Callable[[Path], object], paths: list[Path], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for path in paths:
            check(path)
        best = min(best, time.perf_counter() - t0)
    return best / len(paths) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (CASME II raw: 640x480)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n in range(args.frames):
            noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            paths.append(Path(tmp) / f"img{n}.jpg")
            cv2.imwrite(str(paths[-1]), cv2.GaussianBlur(noise, (9, 9), 3))
        assert all(image_file_issue(p) is None for p in paths)
        check = per_frame_ms(image_file_issue, paths, args.repeat)
        decode = per_frame_ms(read_image, paths, args.repeat)
    print(f"{args.frames} JPEGs {width}x{height}, best of {args.repeat}:")
    print(f"  image_file_issue (magic, header, end): {check:.3f} ms/frame")
    print(f"  read_image (full decode):              {decode:.3f} ms/frame ({decode / check:.0f}x)")


if __name__ == "__main__":
    main()
