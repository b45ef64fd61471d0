"""Numbers that do not depend on which x86-64 CPU computed them (the demo's).

torch, oneDNN, MKL and OpenCV choose their vector code at run time from the CPU: on an
AVX-512 machine a convolution, a matrix product or a sum adds its terms in another order
than on an AVX2 machine, the last bits differ, and after 40 epochs so can a prediction (the
README's demo figures came out 0.9839 / 0.9786 on one 2-core machine, 1.0000 / 1.0000 on
another). ``portable_cpu_env`` pins all four to their AVX2 code, which every x86-64 CPU
since about 2015 runs; it is read when each library loads, so it applies to processes
started inside it (``in_fresh_process``, spawned fold and preprocessing workers), not to
this one if torch or OpenCV is already loaded here.

What stays machine-dependent: CPUs without AVX2 and other architectures (ARM), and other
versions of torch, OpenCV or dlib.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any, TypeVar

from apexmer.workers import exit_with_parent

T = TypeVar("T")

PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels (reductions, element-wise)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: convolutions, matrix products
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility
}
# OpenCV's dispatched AVX-512 code (its hardware feature ids): disabled where present only,
# since OpenCV warns about disabling a feature the CPU lacks.
_OPENCV_AVX512 = {"AVX512F": 13, "AVX512-SKX": 256, "AVX512-CLX": 257}


def portable_env() -> dict[str, str]:
    """The environment variables that pin torch, oneDNN, MKL and OpenCV to AVX2 code."""
    import cv2  # already loaded by every caller that reads frames

    present = [name for name, i in _OPENCV_AVX512.items() if cv2.checkHardwareSupport(i)]
    return {**PORTABLE_ENV, **({"OPENCV_CPU_DISABLE": ",".join(present)} if present else {})}


@contextmanager
def portable_cpu_env() -> Iterator[dict[str, str]]:
    """Set ``portable_env()`` in ``os.environ`` for the processes started inside; restore
    the previous values on leaving."""
    env = portable_env()
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def in_fresh_process(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a newly spawned process (which loads torch and OpenCV
    afresh, under the current environment); its exception is raised here."""
    with ProcessPoolExecutor(
        max_workers=1, mp_context=get_context("spawn"), initializer=exit_with_parent
    ) as pool:
        return pool.submit(fn, *args, **kwargs).result()
