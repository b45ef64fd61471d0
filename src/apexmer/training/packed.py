"""Fold packing: train k LOSO folds at once as ONE grouped network on one device.

Why module replacement (the primary design) rather than the alternatives:

- ``torch.func.functional_call`` + ``vmap`` over stacked weights needs BatchNorm running
  statistics as batched in-place buffers (vmap refuses in-place updates of unbatched
  buffers) and a per-fold batch size that vmap cannot express (tail batches differ).
- CUDA streams or one process per fold keep k copies of every kernel launch: at the
  paper's batch of 2 a GPU runs SE-ResNeXt-50 launch-bound, so k streams hardly overlap.
- Packing turns k networks into one whose every layer is k times wider and k times more
  grouped: ``Conv2d(in, out, groups=g)`` -> ``Conv2d(k*in, k*out, groups=k*g)`` (weights
  concatenated on dim 0), ``BatchNorm2d(C)`` -> ``BatchNorm2d(k*C)`` (per-channel stats are
  per-fold stats), the classifier -> ``PackedLinear`` (per-fold logits). Pooling, ReLU,
  SE scaling and the residual add are per channel, so fold f's channels only ever see fold
  f's input. One launch does the work of k: the kernel count per step is that of a single
  model. Fold f's batch of C channels sits in input channels ``[Cf, Cf+C)``.

Each fold is trained exactly as ``engine.fit`` would train it alone: its own seed
(initial weights), order generator (seed+1), augmentation generator (seed+2), batch size,
trailing-batch-of-one rule, loss (its own class-balanced alpha) and number of optimizer
steps. The loss is the sum of the folds' losses, so each fold's parameters get exactly its
own gradient. Adam's bias correction is per fold (``PackedOptimizer`` keeps one step count
per fold). When folds are at different points (one fold's epoch has ended, or its tail
batch has another size) only the folds with a batch of the same size are *active* in a
sub-step: inactive folds get zero input, their BatchNorm running stats are restored and
the optimizer leaves their parameters and moments untouched. Results agree with
sequential ``fit`` up to float rounding (grouped kernels sum in another order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from apexmer.config import Config
from apexmer.errors import ConfigError, NonFiniteTraining
from apexmer.training.engine import (
    EpochCallback,
    FitResult,
    autocast,
    build_loss,
    build_model,
    check_epoch_loss,
    check_weights,
    epoch_batches,
    fold_generators,
    predict_proba,
    training_settings,
)
from apexmer.training.inputs import augment_config, prepare_batch
from apexmer.training.losses import FocalLoss, check_targets
from apexmer.training.packed_optimizer import PackedOptimizer
from apexmer.training.packing import PackedDropout, pack_models, set_active, unpack


@dataclass
class FoldData:
    """One fold's training set: stored inputs (N, C, S, S), labels (N,), its seed."""

    x: torch.Tensor
    y: torch.Tensor
    seed: int
    x_eval: torch.Tensor | None = None  # oracle mode only


class FoldLosses:
    """The active folds' losses in one call: logits (m, b, C), labels (m, b) -> (m,) each
    fold's mean loss, with each fold's own class weights (``loss.alpha: balanced`` gives
    every fold its own). The arithmetic of each fold's ``FocalLoss``: per-sample loss,
    times alpha of the target, mean over the batch. Folds whose losses are not focal losses
    of one gamma are called one by one."""

    def __init__(self, loss_fns: Sequence[nn.Module]) -> None:
        self.loss_fns = list(loss_fns)
        self.per_sample: FocalLoss | None = None
        self.alpha: torch.Tensor | None = None  # (k, C) or (k,): each fold's alpha
        first = loss_fns[0]
        if not all(
            isinstance(f, FocalLoss) and f.gamma == first.gamma and f.reduction == "mean"
            for f in loss_fns
        ):
            return
        alphas = [f.alpha for f in loss_fns]
        if any(a is not None for a in alphas):
            if any(a is None for a in alphas) or len({a.shape for a in alphas}) > 1:
                return
            self.alpha = torch.stack(alphas)
        self.per_sample = FocalLoss(gamma=first.gamma, reduction="none")

    def __call__(
        self, logits: torch.Tensor, y: torch.Tensor, active: Sequence[int], rows: torch.Tensor
    ) -> torch.Tensor:
        m, b = y.shape
        if self.per_sample is None:
            return torch.stack([self.loss_fns[f](logits[j], y[j]) for j, f in enumerate(active)])
        loss = self.per_sample(logits.reshape(m * b, -1), y.reshape(-1)).view(m, b)
        if self.alpha is not None:
            alpha = self.alpha.index_select(0, rows).to(loss.dtype)  # (m, C) or (m,)
            loss = (alpha.gather(1, y) if alpha.ndim == 2 else alpha[:, None]) * loss
        return loss.mean(1)  # (m,)


def fit_packed(
    config: Config,
    folds: Sequence[FoldData],
    num_classes: int,
    *,
    on_epoch: EpochCallback | None = None,
) -> list[FitResult]:
    """``engine.fit`` for k folds at once; returns one ``FitResult`` per fold (ordinary
    models, unpacked). ``on_epoch`` receives each fold's row with a ``"pack_index"`` key.
    A fold's NaN or infinite loss or final weight raises NonFiniteTraining as ``fit`` does,
    with ``pack_index`` set to that fold's position in ``folds``."""
    with training_settings(config):
        trainer = PackedTrainer(config, folds, num_classes)
        results = [FitResult(model=m) for m in trainer.models]
        for epoch in range(1, config.train.epochs + 1):
            rows = trainer.train_epoch()
            for f, row in enumerate(rows):  # the epoch's one read (train_epoch) already done
                _in_fold(f, check_epoch_loss, row["loss"], epoch, trainer.folds[f].x, config)
            last = config.eval.oracle or epoch == config.train.epochs
            models = trainer.unpacked_models() if last else None
            for f, row in enumerate(rows):
                row = {"epoch": epoch, **row}
                results[f].history.append(row)
                x_eval = trainer.folds[f].x_eval
                if models is not None and x_eval is not None:
                    results[f].eval_probs.append(predict_proba(models[f], x_eval, config))
                if on_epoch is not None:
                    on_epoch({**row, "pack_index": f})
        for f, model in enumerate(trainer.models):  # the last epoch's unpacked states
            _in_fold(f, check_weights, model, config.train.epochs)
        return results


def _in_fold(f: int, check: Callable[..., None], *args) -> None:
    """Run a check of fold ``f``; its NonFiniteTraining carries ``pack_index = f``."""
    try:
        check(*args)
    except NonFiniteTraining as exc:
        exc.pack_index = f
        raise


class PackedTrainer:
    """The state of k folds trained as one packed network: the network, its optimizer,
    each fold's data (on the device), loss and generators. ``train_epoch`` runs one epoch
    of every fold; ``step`` is one optimizer step of some folds (benchmarks drive it)."""

    def __init__(self, config: Config, folds: Sequence[FoldData], num_classes: int) -> None:
        self.config, self.k, device = config, len(folds), config.train.device
        for fd in folds:  # once, here: the steps do not read labels back
            check_targets(fd.y, num_classes)
        # Built and packed on the CPU (the same initial weights on any device), then moved:
        # every parameter and buffer of the packed model follows ``.to(device)``.
        models = [build_model(config, num_classes, fd.seed) for fd in folds]
        packed = pack_models(models).to(device)
        self.models = [m.to(device) for m in models]  # receive the unpacked states
        if config.train.channels_last:
            packed = packed.to(memory_format=torch.channels_last)
        if config.train.cuda_graphs:
            _check_graphable(config, packed)
        self.packed = packed
        self.forward = torch.compile(packed) if config.train.compile else packed
        self.losses = FoldLosses([build_loss(config, fd.y, num_classes).to(device) for fd in folds])
        self.optimizer = PackedOptimizer(list(packed.parameters()), self.k, config)
        # Training data lives on the device for the whole fit: no per-batch host copies.
        self.folds = [dataclasses.replace(fd, x=fd.x.to(device), y=fd.y.to(device)) for fd in folds]
        gens = [fold_generators(fd.seed) for fd in folds]
        self.order_gens, self.aug_gens = [g[0] for g in gens], [g[1] for g in gens]
        self.aug = augment_config(config)
        self.total = torch.zeros(self.k, dtype=torch.float64, device=device)  # loss * batch
        self.correct = torch.zeros(self.k, dtype=torch.long, device=device)
        # train.cuda_graphs: the full-pack step's buffers (and graph), per input shape (an
        # epoch can end with every fold on a shorter batch: a second shape, kept too).
        self._static: dict[tuple[int, ...], _StaticStep] = {}

    def train_epoch(self) -> list[dict]:
        """One epoch of every fold; each fold's ``{"loss", "train_acc"}``."""
        k, config = self.k, self.config
        self.packed.train()
        plan = [
            epoch_batches(len(fd.x), config.train.batch_size, g, config.train.device)
            for fd, g in zip(self.folds, self.order_gens, strict=True)
        ]
        self.total.zero_()
        self.correct.zero_()
        seen = [0] * k
        for t in range(max(len(p) for p in plan)):
            sizes = {f: len(plan[f][t]) for f in range(k) if t < len(plan[f])}
            for size in sorted(set(sizes.values()), reverse=True):
                active = [f for f, s in sizes.items() if s == size]
                self.step([plan[f][t] for f in active], active)
                for f in active:
                    seen[f] += size
        set_active(self.packed, None)
        totals, corrects = self.total.tolist(), self.correct.tolist()  # the epoch's one wait
        return [
            {"loss": totals[f] / max(seen[f], 1), "train_acc": corrects[f] / max(seen[f], 1)}
            for f in range(k)
        ]

    def unpacked_models(self) -> list[nn.Module]:
        """The k ordinary models with the packed network's current state."""
        for model, state in zip(self.models, unpack(self.packed, self.k), strict=True):
            model.load_state_dict(state)
        return self.models

    def step(self, idxs: Sequence[torch.Tensor], active: Sequence[int]) -> None:
        """One optimizer step for the ``active`` folds, all with batches of the same size
        (``idxs``: each active fold's sample indices, on the device)."""
        folds, config = self.folds, self.config
        k, m, b = self.k, len(active), len(idxs[0])
        rows = torch.tensor(active).to(config.train.device, non_blocking=True)  # (m,)
        # All active folds' batches prepared in one call, each fold augmented with the
        # numbers of its own generator: the kernels of one batch, not of m.
        stored = torch.cat([folds[f].x[idx] for f, idx in zip(active, idxs, strict=True)])
        gens = [self.aug_gens[f] for f in active]
        xs = prepare_batch(stored, config, self.aug, gens)  # (m*b, C, S, S)
        xs = xs.unflatten(0, (m, b)).transpose(0, 1)  # (b, m, C, S, S)
        if m < k:  # inactive folds get zero input
            full = xs.new_zeros(b, k, *xs.shape[2:])
            full[:, rows] = xs
            xs = full
        x = xs.reshape(b, -1, *xs.shape[3:])  # (b, k*C, S, S): fold f at channels [fC, (f+1)C)
        if config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yb = torch.stack([folds[f].y[idx] for f, idx in zip(active, idxs, strict=True)])  # (m, b)
        if m == k and config.train.cuda_graphs:
            self._step_static(x, yb)
            return
        set_active(self.packed, None if m == k else active)
        self.optimizer.zero_grad()
        self._train(x, yb, active, rows, lambda: self.optimizer.step(active))

    def _train(
        self,
        x: torch.Tensor,
        yb: torch.Tensor,
        active: Sequence[int],
        rows: torch.Tensor,
        update: Callable[[], None],
    ) -> None:
        """Forward ``x`` (b, k*C, S, S), each active fold's loss on its labels ``yb``
        (m, b), backward, ``update`` (the optimizer step), and the epoch's statistics.
        ``rows`` (m,) holds ``active`` on the device. Takes no decision on the host."""
        # No autocast cache: the same body is captured as a CUDA graph (train.cuda_graphs).
        with autocast(self.config, cache=False):
            logits = self.forward(x)  # (b, k, C)
        fold_logits = logits.float().index_select(1, rows).transpose(0, 1)  # (m, b, C)
        loss = self.losses(fold_logits, yb, active, rows)  # (m,) per-fold mean losses
        loss.sum().backward()  # each fold's parameters get exactly its own gradient
        update()
        with torch.no_grad():
            self.correct.index_add_(0, rows, (fold_logits.argmax(2) == yb).sum(1))
            self.total.index_add_(0, rows, loss.detach().double() * yb.shape[1])

    # ------------------------------------------------ train.cuda_graphs: the full-pack step
    #
    # Every step where all k folds have a batch of the same size (all of them but the end of
    # an epoch's) has the same shapes and, with augmentation done before it, takes no
    # decision on the host: forward, losses, backward, the optimizer and the statistics can
    # run from fixed ("static") buffers. On CUDA that body is captured once as a CUDA graph
    # and replayed: one launch instead of ~2,000 kernel launches per step. Elsewhere (the
    # CPU, the meta device) the same body runs eagerly: the tests check it against ``step``.

    def _step_static(self, x: torch.Tensor, yb: torch.Tensor) -> None:
        st = self._static.get(tuple(x.shape))
        if st is None:
            st = self._static[tuple(x.shape)] = _StaticStep.empty(x, yb, self.k)
        st.x.copy_(x)
        st.y.copy_(yb)
        st.table.copy_(self.optimizer.advance(range(self.k)), non_blocking=True)
        set_active(self.packed, None)
        if st.graph is None and x.device.type == "cuda":
            st.graph = self._capture(st)
        if st.graph is not None:
            st.graph.replay()
            return
        self.optimizer.zero_grad()
        self._static_body(st)

    def _static_body(self, st: _StaticStep) -> None:
        """The full-pack step on the static buffers (what the CUDA graph holds)."""
        self._train(st.x, st.y, range(self.k), st.rows, lambda: self.optimizer.step_all(st.table))

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a training step changes: parameters, buffers, optimizer moments and
        the epoch's statistics."""
        moments = [t for st in self.optimizer.state for t in (st["m"], st["v"]) if t is not None]
        return [
            *self.packed.parameters(),
            *self.packed.buffers(),
            *moments,
            self.total,
            self.correct,
        ]

    def run_restoring(self, fn: Callable[[], None], times: int) -> None:
        """Call ``fn`` ``times`` times, then put every tensor of ``state_tensors`` back as it
        was: warm-up steps that leave the folds' training untouched."""
        tensors = self.state_tensors()
        saved = [t.detach().clone() for t in tensors]
        for _ in range(times):
            fn()
        with torch.no_grad():
            for t, value in zip(tensors, saved, strict=True):
                t.copy_(value)

    def _capture(self, st: _StaticStep) -> torch.cuda.CUDAGraph:
        """Warm the body up on a side stream (cuDNN's algorithm choice, cuBLAS workspaces,
        autograd's gradient buffers), undo the warm-up, and capture one step. PyTorch's
        whole-network capture recipe (``torch.cuda.graphs`` documentation)."""

        def warm() -> None:
            self.optimizer.zero_grad()
            self._static_body(st)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.run_restoring(warm, times=3)
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad()  # the captured backward allocates the gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_body(st)
        return graph


@dataclass
class _StaticStep:
    """Fixed buffers of the full-pack step: its input, labels, Adam scalar table, the
    index of every fold, and the captured graph (CUDA only)."""

    x: torch.Tensor  # (b, k*C, S, S)
    y: torch.Tensor  # (k, b)
    table: torch.Tensor  # (2, k) PackedOptimizer.advance, on the device
    rows: torch.Tensor  # (k,) 0..k-1
    graph: torch.cuda.CUDAGraph | None = None

    @classmethod
    def empty(cls, x: torch.Tensor, y: torch.Tensor, k: int) -> _StaticStep:
        return cls(
            x=torch.empty_like(x),  # keeps x's memory format
            y=torch.empty_like(y),
            table=torch.zeros(2, k, device=x.device),
            rows=torch.arange(k, device=x.device),
        )


def _check_graphable(config: Config, packed: nn.Module) -> None:
    """Raise ConfigError unless the packed step can be captured as a CUDA graph."""
    if config.train.compile:
        raise ConfigError(
            "train.cuda_graphs and train.compile are two ways to the same end: set one"
        )
    if any(isinstance(m, PackedDropout) and m.p > 0 for m in packed.modules()):
        raise ConfigError(
            f"train.cuda_graphs: {config.model.name} has dropout, whose masks are drawn on the "
            "host each step, so its step cannot be replayed. Fix: train.cuda_graphs=false"
        )
