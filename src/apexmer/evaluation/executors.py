"""Fold executors beyond ``local``: ``process`` (local processes) and ``ray`` (a Ray cluster).

Each takes fold groups (one fold each, or ``train.pack_folds`` folds trained as one packed
network) and yields finished fold dicts as they complete; the runner writes them to the run
folder, so resume works the same whatever ran the folds. A fold's result depends only on
its data, its seed, its pack and the thread count, never on where or in which order it ran.

Thread count: oneDNN's results depend on it (measured: SE-ResNeXt gradients differ by
3.5e-5 between 1 and 2 intra-op threads; probabilities of a tiny-model run by up to 0.012),
so every executor runs a fold with ``train.threads`` (default 1): local, process and ray
give identical numbers. With ``train.threads: null`` local uses torch's default and process
workers an equal share of the cores, and the numbers can differ in the last bits.
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
from apexmer.evaluation.protocol import EXECUTORS, LosoData, ProgressFn, train_fold_group
from apexmer.evaluation.splits import Fold

_WORKER_DATA: LosoData | None = None


def threads_per_worker(config: Config, workers: int) -> int:
    """Intra-op threads of one worker: ``train.threads``, else an equal share of the cores."""
    if config.train.threads:
        return config.train.threads
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(data: LosoData, threads: int) -> None:
    global _WORKER_DATA
    torch.set_num_threads(threads)
    _WORKER_DATA = data


def _run_in_worker(group: list[Fold], config: Config) -> list[dict[str, Any]]:
    if _WORKER_DATA is None:
        raise ApexmerError("process executor: worker started without its data")
    return train_fold_group(_WORKER_DATA, group, config)


def run_process(
    data: LosoData,
    groups: list[list[Fold]],
    config: Config,
    workers: int | None,
    progress: ProgressFn | None,
) -> Iterator[dict[str, Any]]:
    """Fold groups spread over ``workers`` spawned processes (default: one per core)."""
    if not groups:
        return
    workers = max(1, min(workers or (os.cpu_count() or 1), len(groups)))
    threads = threads_per_worker(config, workers)
    cfg = config.model_copy(deep=True)
    cfg.train.threads = threads
    # spawn, not fork: forking a process whose OpenMP pool is running can deadlock.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(data, threads),
    )
    try:
        pending = {pool.submit(_run_in_worker, group, cfg) for group in groups}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()
    finally:
        # On an error or an abandoned generator: drop queued groups, do not wait for them.
        pool.shutdown(wait=True, cancel_futures=True)


def run_ray(
    data: LosoData,
    groups: list[list[Fold]],
    config: Config,
    workers: int | None,
    address: str | None,
    progress: ProgressFn | None,
) -> Iterator[dict[str, Any]]:
    """One Ray task per fold group with its CPU (and GPU) resources; local Ray unless
    ``address``."""
    try:
        import ray
    except ImportError:
        raise ApexmerError(
            "the ray executor needs Ray: pip install 'apexmer[distributed]'"
        ) from None
    if not groups:
        return
    started_here = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False
            )
        started_here = True
    pending: list = []
    try:
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        slots = max(1, min(workers or total_cpus, len(groups)))
        threads = config.train.threads or max(1, total_cpus // slots)
        cfg = config.model_copy(deep=True)
        cfg.train.threads = threads
        gpus = 1 if cfg.train.device.startswith("cuda") else 0
        remote = ray.remote(num_cpus=threads, num_gpus=gpus)(train_fold_group)
        data_ref = ray.put(data)
        pending = [remote.remote(data_ref, group, cfg) for group in groups]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield from ray.get(ref)
    finally:
        for ref in pending:  # an error or an abandoned generator: stop the rest
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def run(
    executor: str,
    data: LosoData,
    groups: list[list[Fold]],
    config: Config,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[dict[str, Any]]:
    """Run fold groups on ``process`` or ``ray``; yields fold dicts as groups finish."""
    if executor == "process":
        return run_process(data, groups, config, workers, progress)
    if executor == "ray":
        return run_ray(data, groups, config, workers, ray_address, progress)
    raise ApexmerError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
