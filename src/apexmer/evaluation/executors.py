"""Fold executors: ``local`` (this process), ``process`` (local processes), ``ray`` (a
Ray cluster; with ``train.device: cuda`` one fold group per GPU) and ``auto`` (the
commands' default, ``plan_auto``: ``process`` with one fold group per core, each on
``train.threads`` threads, where that helps; else ``local``).

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
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from typing import Any

import torch

from apexmer.config import Config
from apexmer.errors import ApexmerError
from apexmer.evaluation.folds import train_fold_group
from apexmer.evaluation.splits import Fold
from apexmer.preprocess.pipeline import ProgressFn
from apexmer.training.dataset import ManifestData
from apexmer.workers import exit_with_parent

EXECUTORS = ("auto", "local", "process", "ray")
_WORKER_DATA: ManifestData | None = None


def run_local(
    data: ManifestData, groups: list[list[Fold]], config: Config, progress: ProgressFn | None = None
) -> Iterator[dict[str, Any]]:
    """The ``local`` executor: fold groups one after another in this process."""
    names = {}
    for group in groups:
        names.update({f.index: f.name for f in group})

        def on_epoch(row: dict) -> None:
            if progress:
                progress({"event": "epoch", "group": names[row["fold"]], **row})

        yield from train_fold_group(data, group, config, on_epoch=on_epoch)


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_auto(
    config: Config, n_groups: int, workers: int | None, cpus: int | None = None
) -> tuple[str, int | None]:
    """What ``auto`` runs: ``("process", n)`` with ``n`` = ``workers``, else cores //
    ``train.threads`` (one fold group per core at the default of one thread), capped at the
    number of fold groups; ``("local", None)`` where processes cannot help: one slot or one
    group, ``train.device`` on a GPU (one device), or ``train.threads: null`` (torch then
    uses every core in one process). Each worker runs ``train.threads`` threads, as local
    does, so the numbers are identical to ``local``'s. Pure: tested with any ``cpus``."""
    cpus = usable_cpus() if cpus is None else cpus
    threads = config.train.threads
    if not threads or config.train.device != "cpu":
        return "local", None
    slots = min(workers or max(1, cpus // threads), n_groups)
    return ("process", slots) if slots >= 2 else ("local", None)


def threads_per_worker(config: Config, workers: int) -> int:
    """Intra-op threads of one worker: ``train.threads``, else an equal share of the cores."""
    if config.train.threads:
        return config.train.threads
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(data: ManifestData, threads: int) -> None:
    global _WORKER_DATA
    exit_with_parent()  # a killed runner takes its workers with it
    torch.set_num_threads(threads)
    _WORKER_DATA = data


def _run_in_worker(group: list[Fold], config: Config) -> list[dict[str, Any]]:
    if _WORKER_DATA is None:
        raise ApexmerError("process executor: worker started without its data")
    return train_fold_group(_WORKER_DATA, group, config)


def run_process(
    data: ManifestData,
    groups: list[list[Fold]],
    config: Config,
    workers: int | None,
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


@dataclass(frozen=True)
class RayPlan:
    """Resources of one Ray task (one fold group) and how many run at once."""

    slots: int  # fold groups in flight
    num_cpus: int  # per task; also its torch intra-op threads
    num_gpus: int  # per task: 1 on CUDA (one group per GPU), else 0
    device: str  # the task's train.device: Ray sets CUDA_VISIBLE_DEVICES, so plain "cuda"


def plan_ray(
    config: Config, n_groups: int, cluster_cpus: int, cluster_gpus: int, workers: int | None
) -> RayPlan:
    """Place fold groups on a cluster: on CUDA one group per GPU (``num_gpus=1``; Ray pins
    each task to its own device), on the CPU ``workers`` (default: every core) slots sharing
    the cores. Pure: tested without Ray."""
    cuda = config.train.device.startswith("cuda")
    if cuda and cluster_gpus < 1:
        raise ApexmerError(
            f"train.device={config.train.device} but the Ray cluster has no GPU. Fix: start "
            "the workers with --num-gpus, or use --set train.device=cpu"
        )
    limit = cluster_gpus if cuda else cluster_cpus
    slots = max(1, min(workers or limit, limit, n_groups))
    cpus = config.train.threads or max(1, cluster_cpus // slots)
    return RayPlan(
        slots=slots,
        num_cpus=cpus,
        num_gpus=1 if cuda else 0,
        device="cuda" if cuda else config.train.device,
    )


def run_ray(
    data: ManifestData,
    groups: list[list[Fold]],
    config: Config,
    workers: int | None,
    address: str | None,
) -> Iterator[dict[str, Any]]:
    """One Ray task per fold group with its CPU (and GPU) resources (``plan_ray``); local
    Ray unless ``address``."""
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
        resources = ray.cluster_resources()
        plan = plan_ray(
            config,
            len(groups),
            int(resources.get("CPU", 1)),
            int(resources.get("GPU", 0)),
            workers,
        )
        cfg = config.model_copy(deep=True)
        cfg.train.threads, cfg.train.device = plan.num_cpus, plan.device
        remote = ray.remote(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)(train_fold_group)
        data_ref = ray.put(data)
        queue = iter(groups)
        # At most ``slots`` groups submitted at once: Ray queues the rest anyway, but a
        # cancelled run then has little to cancel.
        pending = [remote.remote(data_ref, g, cfg) for g in islice(queue, plan.slots)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield from ray.get(ref)
            pending += [remote.remote(data_ref, g, cfg) for g in islice(queue, len(done))]
    finally:
        for ref in pending:  # an error or an abandoned generator: stop the rest
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def run(
    executor: str,
    data: ManifestData,
    groups: list[list[Fold]],
    config: Config,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[dict[str, Any]]:
    """Run fold groups on ``executor``; yields fold dicts as groups finish. ``progress``
    gets per-epoch rows from the local executor (workers elsewhere report per group, as
    the runner writes each finished fold)."""
    if executor == "auto":
        executor, workers = plan_auto(config, len(groups), workers)
    if executor == "local":
        return run_local(data, groups, config, progress)
    if executor == "process":
        return run_process(data, groups, config, workers)
    if executor == "ray":
        return run_ray(data, groups, config, workers, ray_address)
    raise ApexmerError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
