"""A training step never reads a value back from the device.

On a GPU every read (``.item()``, ``int(t)``, ``nonzero``, a blocking host->device copy)
stalls the host until the GPU has caught up, so the next step's kernels cannot be queued
while the current ones run: at the paper's batch of 2 that roughly doubles a step. The
``meta`` device has no data at all: a step that ran there took every decision on the host.
``tests/test_gpu.py`` counts the real waits on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from apexmer.config import Config
from apexmer.training.engine import (
    build_loss,
    build_model,
    build_optimizer,
    train_step,
    training_settings,
)
from apexmer.training.inputs import augment_config, input_channels, prepare_batch
from apexmer.training.packed import FoldData, PackedTrainer

NUM_CLASSES, K, B = 5, 3, 4


def _meta_config(**extra) -> Config:
    config = Config.model_validate(
        {
            "model": {"name": "seresnext_tiny"},
            "data": {"input_size": 32},
            "loss": {"alpha": "balanced"},
            "train": {"epochs": 1, "batch_size": B},
            **extra,
        }
    )
    config.train.device = "meta"  # not a user setting: assigned after validation
    return config


def _fold(config: Config, seed: int) -> FoldData:
    g = torch.Generator().manual_seed(seed)
    s, c = config.data.input_size, len(input_channels(config.data))
    x = torch.randint(0, 256, (12, c, s, s), dtype=torch.uint8, generator=g)
    if config.data.input == "flow":
        x = torch.randn(12, c, s, s, generator=g).half()
    return FoldData(x=x, y=torch.randint(0, NUM_CLASSES, (12,), generator=g), seed=seed)


FLOW = {"data": {"input_size": 32, "input": "flow"}}


@pytest.mark.parametrize("extra", [{}, FLOW], ids=["frame", "flow"])
def test_a_step_runs_on_the_meta_device(extra: dict) -> None:
    config = _meta_config(**extra)
    fd = _fold(config, 0)
    model = build_model(config, NUM_CLASSES, fd.seed).to("meta")
    loss_fn = build_loss(config, fd.y, NUM_CLASSES).to("meta")
    optimizer = build_optimizer(config, model)
    x, y = fd.x.to("meta"), fd.y.to("meta")
    idx = torch.arange(B, device="meta")
    xb = prepare_batch(x[idx], config, augment_config(config), torch.Generator().manual_seed(1))
    loss, hits = train_step(model, xb, y[idx], loss_fn, optimizer, config)
    assert loss.device.type == hits.device.type == "meta" and loss.shape == hits.shape == ()


GRAPHS = {"train": {"epochs": 1, "batch_size": B, "cuda_graphs": True}}  # the static step


@pytest.mark.parametrize("extra", [{}, FLOW, GRAPHS], ids=["frame", "flow", "cuda-graphs-body"])
@pytest.mark.parametrize("active", [[0, 1, 2], [0, 2]], ids=["all-folds", "some-folds"])
def test_a_packed_step_runs_on_the_meta_device(extra: dict, active: list[int]) -> None:
    config = _meta_config(**extra)
    trainer = PackedTrainer(config, [_fold(config, seed) for seed in range(K)], NUM_CLASSES)
    assert trainer.packed.conv1.weight.device.type == "meta"
    trainer.step([torch.arange(B, device="meta")] * len(active), active)
    assert trainer.optimizer.steps == [1 if f in active else 0 for f in range(K)]


@pytest.mark.parametrize("device,benchmark", [("cuda", True), ("cuda", False), ("cpu", True)])
def test_training_settings_apply_and_restore(device: str, benchmark: bool) -> None:
    # Process-wide flags: set for the fit, the caller's restored after (a CUDA config
    # is only read here, so the test needs no GPU).
    config = Config.model_validate(
        {"train": {"device": device, "threads": 1, "cudnn_benchmark": benchmark}}
    )
    before = (torch.get_num_threads(), torch.backends.cudnn.benchmark)
    with training_settings(config):
        assert torch.get_num_threads() == 1
        want = benchmark if device == "cuda" else before[1]
        assert torch.backends.cudnn.benchmark is want
    assert (torch.get_num_threads(), torch.backends.cudnn.benchmark) == before
