"""Training and inference loops: ``fit`` trains for a fixed number of epochs and returns data.

Inputs are held in memory as the input kind stores them (``training/inputs.py``: uint8 RGB
``(N, 3, S, S)`` images, float16 ``(N, C, S, S)`` flow); ``inputs.prepare_batch`` converts,
augments and normalises per batch. Deterministic on CPU for a given seed: the initial weights,
the batch order and the augmentation each draw from their own seeded generator.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from apexmer.config import Config
from apexmer.errors import NonFiniteTraining
from apexmer.models.ensemble import Ensemble
from apexmer.models.layers import seed_dropout
from apexmer.models.registry import create_model
from apexmer.models.weights import load_pretrained
from apexmer.training.inputs import augment_config, config_model_kwargs, prepare_batch
from apexmer.training.losses import FocalLoss, check_targets, class_balanced_alpha

EpochCallback = Callable[[dict], None]


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)  # one row per epoch
    eval_probs: list[np.ndarray] = field(default_factory=list)  # per epoch, oracle mode only


# Seeds of ensemble members are this far apart: odd and far beyond seed_for's range (for
# train.seed below 10,000), so the seeds of members 1.. (seed, + 1, + 2: the weights and
# fold_generators) never meet those of another member, nor of member 0 of any fold.
MEMBER_STRIDE = 1_000_000_007


def seed_for(config: Config, fold_index: int) -> int:
    """One seed per fold, so a fold's result does not depend on which folds ran before it."""
    return config.train.seed * 100_003 + fold_index


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member ``member`` (0-based) of a network seeded ``seed``: its
    initial weights, dropout, batch order and augmentation all follow from it
    (``build_model``, ``fold_generators``). Member 0 is ``seed`` itself: an ensemble of one
    is the single model."""
    return seed + member * MEMBER_STRIDE


def build_model(config: Config, num_classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    # in_chans (and input_size for the flow networks) follow the input kind.
    model = create_model(config.model.name, num_classes=num_classes, **config_model_kwargs(config))
    if config.model.weights:
        load_pretrained(model, config.model.weights)
    seed_dropout(model, seed)  # dropout masks from the fold's seed: the same alone or packed
    return model


def build_loss(config: Config, y_train: torch.Tensor, num_classes: int) -> nn.Module:
    alpha = config.loss.alpha
    if alpha in ("balanced", "sqrt_balanced"):
        counts = torch.bincount(y_train, minlength=num_classes)
        alpha_t = class_balanced_alpha(counts, power=1.0 if alpha == "balanced" else 0.5)
    elif alpha == "none":
        alpha_t = None
    else:
        alpha_t = torch.tensor(alpha, dtype=torch.float32)
    gamma = config.loss.gamma if config.loss.name == "focal" else 0.0
    return FocalLoss(gamma=gamma, alpha=alpha_t)


def build_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "adam":
        return torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
    )


def autocast(config: Config, *, cache: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast when ``train.amp`` asks for it. ``cache=False`` for a region that is
    captured as a CUDA graph (the cast-weight cache must not outlive the capture)."""
    if config.train.amp == "bf16":
        device_type = "cuda" if config.train.device.startswith("cuda") else "cpu"
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches. A trailing batch of one is dropped: BatchNorm cannot
    train on a single sample at small inputs, and the paper's even batches never meet it."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2 and n > 1:
            break
        yield idx


def fold_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """A fold's (batch order, augmentation) generators from its seed (the weights use the
    seed itself). On the CPU: the same draws on any device, alone or packed."""
    return torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 2)


def epoch_batches(
    n: int, batch_size: int, generator: torch.Generator, device: str | torch.device
) -> list[torch.Tensor]:
    """One epoch's ``batches``, drawn on the CPU and moved to ``device`` in one copy (no
    per-step host->device index copy)."""
    idxs = list(batches(n, batch_size, generator))
    if not idxs:
        return []
    return list(torch.cat(idxs).to(device, non_blocking=True).split([len(i) for i in idxs]))


def train_one_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: Config,
    order_gen: torch.Generator,
    aug_gen: torch.Generator,
) -> dict:
    """One epoch of optimizer steps. The loss and accuracy are summed on the device and read
    once at the end: no step waits for a GPU (``tests/test_gpu.py`` counts the waits)."""
    model.train()
    aug = augment_config(config)
    device = config.train.device
    total = torch.zeros((), dtype=torch.float64, device=device)  # sum of loss * batch size
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for idx in epoch_batches(len(x), config.train.batch_size, order_gen, x.device):
        xb = prepare_batch(x[idx], config, aug, aug_gen)
        yb = y[idx].to(device, non_blocking=True)
        loss, hits = train_step(model, xb, yb, loss_fn, optimizer, config)
        total += loss.double() * len(idx)
        correct += hits
        seen += len(idx)
    return {"loss": float(total) / max(seen, 1), "train_acc": int(correct) / max(seen, 1)}


def train_step(
    model: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: Config,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a prepared batch; returns (mean loss, correct count) as
    tensors on the device, without reading them."""
    with autocast(config):
        logits = model(xb)
    loss = loss_fn(logits.float(), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.argmax(1) == yb).sum()


def check_epoch_loss(loss: float, epoch: int, x: torch.Tensor, config: Config) -> None:
    """Raise NonFiniteTraining when an epoch's mean loss (read once per epoch anyway) is NaN
    or infinite, naming the first training sample whose network input is not finite. The
    steps themselves never read anything back (``tests/test_device_sync.py``)."""
    if not math.isfinite(loss):
        raise NonFiniteTraining(
            f"the mean training loss is {loss}", epoch, sample_index=first_non_finite(x, config)
        )


@torch.no_grad()
def first_non_finite(x: torch.Tensor, config: Config) -> int | None:
    """The first of stored inputs ``x`` whose network input (normalised, not augmented)
    holds NaN or inf, or None. Only on the error path: it reads from the device."""
    for start in range(0, len(x), config.train.eval_batch_size):
        xb = prepare_batch(x[start : start + config.train.eval_batch_size], config)
        bad = ~xb.flatten(1).isfinite().all(1)
        if bool(bad.any()):
            return start + int(bad.nonzero()[0, 0])
    return None


@torch.no_grad()
def check_weights(model: nn.Module, epoch: int) -> None:
    """Raise NonFiniteTraining unless every float parameter and buffer of a trained model is
    finite (one read, at the end of a fit: the last step's update is not in any loss)."""
    named = [
        (name, t)
        for name, t in (*model.named_parameters(), *model.named_buffers())
        if t.is_floating_point() and t.numel()
    ]
    if not named or bool(torch.stack([t.isfinite().all() for _, t in named]).all()):
        return
    first = next(name for name, t in named if not bool(t.isfinite().all()))
    raise NonFiniteTraining(f"the trained weight {first} holds NaN or inf", epoch)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, config: Config) -> np.ndarray:
    """Softmax probabilities ``(N, K)`` for stored inputs ``(N, C, S, S)``.

    An ``Ensemble`` gives its members' probabilities averaged; ``eval.tta: hflip`` averages
    each input's with its mirror's (``prepare_batch(mirror=True)``): the mean over
    members x views of the softmax."""
    model.eval()
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    views = (False, True) if config.eval.tta == "hflip" else (False,)
    out = []
    for start in range(0, len(x), config.train.eval_batch_size):
        stored = x[start : start + config.train.eval_batch_size]
        total = None
        for mirror in views:
            xb = prepare_batch(stored, config, mirror=mirror)
            for member in members:
                with autocast(config):
                    logits = member(xb)
                p = torch.softmax(logits.float(), dim=1)
                total = p if total is None else total + p
        out.append((total / (len(views) * len(members))).cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


@contextlib.contextmanager
def training_settings(config: Config) -> Iterator[None]:
    """Run a block with the process-wide settings of ``config.train``, then restore the
    caller's: torch's intra-op threads (None: leave as is) and, on CUDA, cuDNN's
    benchmark mode (each convolution shape timed once and its fastest algorithm kept:
    training steps have a few fixed shapes)."""
    threads, cudnn = torch.get_num_threads(), torch.backends.cudnn.benchmark
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if config.train.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = config.train.cudnn_benchmark
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn


def fit(
    config: Config,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    num_classes: int,
    seed: int,
    *,
    x_eval: torch.Tensor | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train a fresh model for ``config.train.epochs`` epochs; the last epoch's model is kept.

    With ``x_eval`` (oracle mode only) the probabilities on it are recorded every epoch.
    A NaN or infinite epoch loss or final weight raises NonFiniteTraining (epoch, and the
    index of the first training sample whose input is not finite): no model comes back.
    """
    with training_settings(config):
        return _fit(config, x_train, y_train, num_classes, seed, x_eval, on_epoch)


def _fit(
    config: Config,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    num_classes: int,
    seed: int,
    x_eval: torch.Tensor | None,
    on_epoch: EpochCallback | None,
) -> FitResult:
    check_targets(y_train, num_classes)  # once, here: the steps do not read labels back
    model = build_model(config, num_classes, seed).to(config.train.device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(config, y_train, num_classes).to(config.train.device)
    # Training data lives on the device for the whole fit: no per-batch host copies.
    x_train, y_train = x_train.to(config.train.device), y_train.to(config.train.device)
    optimizer = build_optimizer(config, model)
    order_gen, aug_gen = fold_generators(seed)
    result = FitResult(model=model)
    # The compiled module shares the parameters; the plain one is returned and predicts.
    step_model = torch.compile(model) if config.train.compile else model
    for epoch in range(1, config.train.epochs + 1):
        row = {
            "epoch": epoch,
            **train_one_epoch(
                step_model, x_train, y_train, loss_fn, optimizer, config, order_gen, aug_gen
            ),
        }
        if x_eval is not None:
            result.eval_probs.append(predict_proba(model, x_eval, config))
        check_epoch_loss(row["loss"], epoch, x_train, config)
        result.history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    check_weights(model, config.train.epochs)
    return result
