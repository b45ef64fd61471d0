"""Fold executors beyond ``local``: ``process`` (local processes) and ``ray`` (a Ray cluster).

Each yields finished fold dicts as they complete; the runner writes them to the run folder,
so resume works the same whatever ran the folds. A fold's result depends only on its data,
its seed and the thread count (``train.threads``), never on where or in which order it ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

import torch

from apexmer.config import Config
from apexmer.errors import ApexmerError
from apexmer.evaluation.protocol import LosoData, ProgressFn, train_fold
from apexmer.evaluation.splits import Fold

EXECUTORS = ("local", "process", "ray")

_WORKER_DATA: LosoData | None = None


def threads_per_worker(config: Config, workers: int) -> int:
    if config.train.threads:
        return config.train.threads
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(data: LosoData, threads: int) -> None:
    global _WORKER_DATA
    torch.set_num_threads(threads)
    _WORKER_DATA = data


def _run_in_worker(fold: Fold, config: Config) -> dict[str, Any]:
    assert _WORKER_DATA is not None, "worker not initialised"
    return train_fold(_WORKER_DATA, fold, config)


def run_process(data: LosoData, folds: list[Fold], config: Config, workers: int | None,
                progress: ProgressFn | None) -> Iterator[dict[str, Any]]:
    """Folds spread over ``workers`` spawned processes (default: one per core)."""
    if not folds:
        return
    workers = max(1, min(workers or (os.cpu_count() or 1), len(folds)))
    threads = threads_per_worker(config, workers)
    cfg = config.model_copy(deep=True)
    cfg.train.threads = threads
    # spawn, not fork: forking a process whose OpenMP pool is running can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(data, threads)) as pool:
        pending = {pool.submit(_run_in_worker, fold, cfg) for fold in folds}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


def run_ray(data: LosoData, folds: list[Fold], config: Config, workers: int | None,
            address: str | None, progress: ProgressFn | None) -> Iterator[dict[str, Any]]:
    """One Ray task per fold with its CPU (and GPU) resources; local Ray unless ``address``."""
    try:
        import ray
    except ImportError:
        raise ApexmerError("the ray executor needs Ray: pip install 'apexmer[distributed]'"
                           ) from None
    if not folds:
        return
    started_here = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False,
                     log_to_driver=False)
        started_here = True
    try:
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = max(1, min(workers or total_cpus, len(folds)))
        threads = config.train.threads or max(1, total_cpus // slots)
        cfg = config.model_copy(deep=True)
        cfg.train.threads = threads
        gpus = 1 if cfg.train.device.startswith("cuda") else 0
        remote = ray.remote(num_cpus=threads, num_gpus=gpus)(train_fold)
        data_ref = ray.put(data)
        pending = [remote.remote(data_ref, fold, cfg) for fold in folds]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def run(executor: str, data: LosoData, folds: list[Fold], config: Config, *,
        workers: int | None = None, ray_address: str | None = None,
        progress: ProgressFn | None = None) -> Iterator[dict[str, Any]]:
    if executor == "process":
        return run_process(data, folds, config, workers, progress)
    if executor == "ray":
        return run_ray(data, folds, config, workers, ray_address, progress)
    raise ApexmerError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
