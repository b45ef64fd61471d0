"""LOSO executors: local, process and ray give identical numbers; resume repeats a run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from apexmer.config import Config
from apexmer.data.manifest import write_manifest
from apexmer.data.sample import Sample
from apexmer.evaluation.protocol import run_loso

SUBJECTS, PER_SUBJECT, SIZE = 3, 5, 32


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 subjects x 5 crops, 3 classes, as PNGs plus a manifest."""
    root = tmp_path_factory.mktemp("tiny_corpus")
    rng = np.random.default_rng(0)
    samples = []
    for s in range(SUBJECTS):
        for c in range(PER_SUBJECT):
            label = ("disgust", "happiness", "others")[(s + c) % 3]
            image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            image[:, :, (s + c) % 3] //= 2  # a faint class-independent tint
            path = root / "images" / f"sub{s:02d}_{c}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image)
            samples.append(
                Sample(
                    dataset="tiny", subject=f"sub{s:02d}", clip=f"c{c}", label=label, apex_path=path
                )
            )
    return write_manifest(samples, root / "manifest.csv", coding_version="tiny-v1")


def _config(**train) -> Config:
    return Config.model_validate(
        {
            "name": "tiny",
            "model": {"name": "seresnext_tiny"},
            "data": {"input_size": SIZE},
            "optim": {"lr": 1e-3},
            # train.threads left at its default: identity must hold without asking for it
            "train": {"epochs": 2, "batch_size": 4, **train},
        }
    )


def _numbers(out: Path) -> tuple[dict, str]:
    summary = json.loads((out / "summary.json").read_text())
    keys = ("accuracy", "uf1", "uar", "confusion", "per_class", "uf1_per_fold_mean")
    return {k: summary[k] for k in keys}, (out / "predictions.csv").read_text()


@pytest.fixture(scope="module")
def local_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    run_loso(manifest, _config(), out, executor="local")
    return out


def test_process_equals_local(manifest: Path, local_run: Path, tmp_path: Path) -> None:
    run_loso(manifest, _config(), tmp_path, executor="process", workers=2)
    assert _numbers(tmp_path) == _numbers(local_run)


def test_resume_after_lost_fold_gives_same_numbers(
    manifest: Path, local_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_loso(manifest, _config(), out, executor="local")
    (out / "folds" / "fold_001.json").unlink()  # as if killed before fold 1 was written
    (out / "summary.json").unlink()
    run_loso(manifest, _config(), out, executor="local")
    assert _numbers(out) == _numbers(local_run)


def test_packed_run_close_to_sequential_and_resume_exact(
    manifest: Path, local_run: Path, tmp_path: Path
) -> None:
    config = _config(pack_folds=2)
    out = tmp_path / "packed"
    run_loso(manifest, config, out, executor="local")
    # Fold 1 shares a pack with fold 0: resuming retrains the pack and must repeat it.
    first = _numbers(out)
    (out / "folds" / "fold_001.json").unlink()
    run_loso(manifest, config, out, executor="local")
    assert _numbers(out) == first
    packed = [
        json.loads((out / "folds" / f"fold_{i:03d}.json").read_text()) for i in range(SUBJECTS)
    ]
    seq = [
        json.loads((local_run / "folds" / f"fold_{i:03d}.json").read_text())
        for i in range(SUBJECTS)
    ]
    for p, s in zip(packed, seq, strict=True):
        assert p["test_idx"] == s["test_idx"]
        assert len(p["history"]) == len(s["history"])
        np.testing.assert_allclose(p["probs"], s["probs"], atol=5e-3)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_equals_local(
    manifest: Path, local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_loso(manifest, _config(), tmp_path, executor="ray")
    finally:
        ray.shutdown()
    assert _numbers(tmp_path) == _numbers(local_run)


def test_unknown_executor_is_refused(manifest: Path, tmp_path: Path) -> None:
    from apexmer.errors import ApexmerError

    with pytest.raises(ApexmerError, match="unknown executor"):
        run_loso(manifest, _config(), tmp_path, executor="threads")
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize(
    ("device", "groups", "cpus", "gpus", "workers", "expected"),
    [
        # CUDA: one fold group per GPU, Ray pins each task to its own device ("cuda").
        ("cuda", 26, 64, 4, None, (4, 1, 1, "cuda")),
        ("cuda:1", 3, 64, 8, None, (3, 1, 1, "cuda")),
        ("cuda", 26, 64, 8, 2, (2, 1, 1, "cuda")),
        # CPU: the cores shared by the slots; no GPU asked for.
        ("cpu", 26, 8, 0, None, (8, 1, 0, "cpu")),
        ("cpu", 2, 8, 4, None, (2, 1, 0, "cpu")),
    ],
)
def test_ray_plan_places_one_group_per_gpu(device, groups, cpus, gpus, workers, expected) -> None:
    from apexmer.evaluation.executors import plan_ray

    plan = plan_ray(_config(device=device, threads=1), groups, cpus, gpus, workers)
    assert (plan.slots, plan.num_cpus, plan.num_gpus, plan.device) == expected


def test_ray_plan_shares_cores_when_threads_are_not_fixed() -> None:
    from apexmer.evaluation.executors import plan_ray

    plan = plan_ray(_config(threads=None), 3, 12, 0, None)
    assert (plan.slots, plan.num_cpus) == (3, 4)


def test_ray_plan_refuses_cuda_on_a_cluster_without_gpus() -> None:
    from apexmer.errors import ApexmerError
    from apexmer.evaluation.executors import plan_ray

    with pytest.raises(ApexmerError, match="no GPU"):
        plan_ray(_config(device="cuda"), 4, 16, 0, None)


def test_auto_runs_one_process_per_core_with_local_numbers(
    manifest: Path, local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apexmer.evaluation import executors

    used = []
    real = executors.run_process

    def recording(data, groups, config, workers):
        used.append((len(groups), workers))
        return real(data, groups, config, workers)

    monkeypatch.setattr(executors, "usable_cpus", lambda: 2)  # whatever this machine has
    monkeypatch.setattr(executors, "run_process", recording)
    run_loso(manifest, _config(), tmp_path, executor="auto")
    assert used == [(3, 2)]  # 3 folds over 2 worker processes
    assert _numbers(tmp_path) == _numbers(local_run)


@pytest.mark.parametrize(
    ("train", "groups", "cpus", "workers", "expected"),
    [
        ({}, 26, 16, None, ("process", 16)),  # one fold group per core, one thread each
        ({}, 3, 16, None, ("process", 3)),  # no idle workers
        ({"threads": 4}, 26, 16, None, ("process", 4)),  # cores // train.threads
        ({}, 26, 16, 5, ("process", 5)),  # --workers wins
        ({}, 26, 1, None, ("local", None)),  # one core
        ({}, 1, 16, None, ("local", None)),  # one group
        ({"threads": None}, 26, 16, None, ("local", None)),  # torch uses every core itself
        ({"device": "cuda"}, 26, 16, None, ("local", None)),  # one GPU
    ],
)
def test_auto_plan(train, groups, cpus, workers, expected) -> None:
    from apexmer.evaluation.executors import plan_auto

    assert plan_auto(_config(**train), groups, workers, cpus=cpus) == expected


def test_commands_default_to_auto() -> None:
    from typer.main import get_command

    from apexmer.cli.main import app

    command = get_command(app)
    for name in ("loso", "ablation"):
        (option,) = [p for p in command.commands[name].params if p.name == "executor"]
        assert option.default == "auto", name
