"""A pool of worker processes over samples, each worker holding its own landmark detector.

Shared by the corpus preprocessing job (``apexmer.preprocess.pipeline``) and the apex
spotter's evaluation (``apexmer.spotting.apex_eval``), so it lives below both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

import cv2

from apexmer.data.sample import Sample
from apexmer.face.landmarks import get_detector
from apexmer.workers import exit_with_parent

_WORKER: dict[str, Any] = {}
SampleTask = Callable[..., dict[str, Any]]


def _init_worker(detector_name: str) -> None:
    exit_with_parent()  # a killed preprocess takes its workers with it
    cv2.setNumThreads(1)
    _WORKER["detector"] = get_detector(detector_name)


def _call(task: SampleTask, sample: Sample, kwargs: dict[str, Any]) -> dict[str, Any]:
    return task(sample, _WORKER["detector"], **kwargs)


def map_samples(
    task: SampleTask, samples: list[Sample], detector_name: str, workers: int, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """``task(sample, detector, **kwargs)`` for every sample, yielding results as they
    finish; in spawned worker processes (each with its own detector) when workers > 1.
    At most ``2 * workers`` samples are in flight, so memory stays bounded."""
    if workers <= 1:
        detector = get_detector(detector_name)
        for sample in samples:
            yield task(sample, detector, **kwargs)
        return
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(detector_name,),
    ) as pool:
        queue = iter(samples)
        pending = set()
        for sample in queue:
            pending.add(pool.submit(_call, task, sample, kwargs))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(_call, task, nxt, kwargs))
