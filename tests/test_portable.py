"""The demo's numbers do not depend on the x86-64 CPU: the processes that compute them run
torch, oneDNN, MKL and OpenCV on their AVX2 code (``apexmer.portable``)."""

from __future__ import annotations

import os

import pytest

from apexmer.portable import PORTABLE_ENV, in_fresh_process, portable_cpu_env


def _what_a_worker_runs() -> dict:
    import cv2
    import torch

    return {
        "env": {k: os.environ.get(k) for k in PORTABLE_ENV},
        "torch": torch.backends.cpu.get_cpu_capability(),
        "opencv_avx512": cv2.checkHardwareSupport(13),  # CV_CPU_AVX_512F
    }


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 ISA pinning")
def test_workers_started_inside_run_avx2_code(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "OPENCV_CPU_DISABLE"):
        monkeypatch.delenv(key, raising=False)
    with portable_cpu_env():
        seen = in_fresh_process(_what_a_worker_runs)
    assert seen["env"] == PORTABLE_ENV
    assert seen["torch"] in ("AVX2", "DEFAULT")  # DEFAULT: a CPU without AVX2
    assert seen["opencv_avx512"] is False  # on an AVX-512 machine too
    assert all(key not in os.environ for key in PORTABLE_ENV)  # restored on leaving
