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

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from apexmer.config import Config
from apexmer.errors import ConfigError, NonFiniteTraining
from apexmer.models.layers import Dropout
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


class PackedLinear(nn.Module):
    """k independent classifiers: ``(B, k*F)`` -> per-fold logits ``(B, k, C)``."""

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.k = k
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))  # (k, C, F)
        self.bias = nn.Parameter(torch.zeros(k, out_features))  # (k, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.k, -1)  # (B, k, F)
        return torch.einsum("bkf,kcf->bkc", x, self.weight) + self.bias  # (B, k, C)


class PackedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over k*C channels that can leave inactive folds' running stats untouched.

    ``fold_batches`` (k,) counts training batches per fold (the per-fold
    ``num_batches_tracked``). ``active`` (k,) bool, set by ``set_active``, marks the folds
    whose input is real in the current training step when ``partial`` is set. Both are
    registered buffers, so they follow ``.to(device)`` with the rest of the model.
    """

    fold_batches: torch.Tensor
    active: torch.Tensor

    def __init__(self, k: int, num_features: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.k = k
        device = kwargs.get("device")
        self.register_buffer("fold_batches", torch.zeros(k, dtype=torch.long, device=device))
        self.register_buffer(
            "active", torch.ones(k, dtype=torch.bool, device=device), persistent=False
        )
        self.partial = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        if not self.partial:  # every fold has real input: plain BatchNorm
            self.fold_batches += 1
            return super().forward(x)
        # Update copies (autograd saves them), then take only the active folds' channels.
        mean, var = self.running_mean.clone(), self.running_var.clone()
        out = F.batch_norm(x, mean, var, self.weight, self.bias, True, self.momentum, self.eps)
        take = self.active.repeat_interleave(self.num_features // self.k)  # (k*C,)
        with torch.no_grad():
            self.running_mean.copy_(torch.where(take, mean, self.running_mean))
            self.running_var.copy_(torch.where(take, var, self.running_var))
            self.fold_batches += self.active.long()
        return out


class PackedDropout(nn.Module):
    """k folds' ``layers.Dropout`` at once, each fold's mask from that fold's own generator.

    A fold's slice of the packed activation is dim 1 split in k (``(B, k*C, ...)``), or
    dim 1 itself after a ``PackedLinear`` (``(B, k, F)``). Each active fold draws a mask of
    the shape its activation has alone, with its own module's ``draw_mask`` (on the CPU,
    from its generator), in the order its forwards come: exactly the draws of the fold
    trained alone. Inactive folds draw nothing (their input is zero). The k masks are
    concatenated and moved to the device in one copy.
    """

    def __init__(self, drops: Sequence[Dropout]) -> None:
        super().__init__()
        if any(d.generator is None for d in drops):
            raise ValueError(
                "fold packing needs seeded dropout (models.layers.seed_dropout): masks from "
                "the global RNG cannot be drawn per fold"
            )
        self.k, self.p = len(drops), drops[0].p
        self._drops = list(drops)  # plain list: no submodules, no state to pack
        self.folds: list[int] | None = None  # set_active: the folds with real input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        b, k = x.shape[0], self.k
        after_linear = x.ndim == 3 and x.shape[1] == k
        # One fold's activation alone, and its block of the packed mask.
        alone = (b, *x.shape[2:]) if after_linear else (b, x.shape[1] // k, *x.shape[2:])
        if self._drops[0].channelwise:
            alone = (*alone[:2], *([1] * (len(alone) - 2)))
        block = (b, 1, *alone[1:]) if after_linear else alone
        active = range(k) if self.folds is None else set(self.folds)
        cpu = torch.device("cpu")
        masks = [
            self._drops[f].draw_mask(alone, cpu).view(block) if f in active else torch.ones(block)
            for f in range(k)
        ]
        mask = torch.cat(masks, dim=1).to(x.device, non_blocking=True)
        return x * mask.to(x.dtype)

    def extra_repr(self) -> str:
        return f"k={self.k}, p={self.p}, channelwise={self._drops[0].channelwise}"


def _cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors], dim=0)


def _device(m: nn.Module) -> torch.device | None:
    t = next(itertools.chain(m.parameters(recurse=False), m.buffers(recurse=False)), None)
    return None if t is None else t.device


def _pack_module(mods: Sequence[nn.Module]) -> nn.Module | None:
    """The packed replacement of k same-shaped leaf modules (None: leave it as is)."""
    k, m = len(mods), mods[0]
    if isinstance(m, nn.Conv2d):
        new = nn.Conv2d(
            k * m.in_channels,
            k * m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            groups=k * m.groups,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
            device=m.weight.device,
            dtype=m.weight.dtype,
        )
        with torch.no_grad():
            new.weight.copy_(_cat([x.weight for x in mods]))  # (k*out, in/g, kh, kw)
            if m.bias is not None:
                new.bias.copy_(_cat([x.bias for x in mods]))
        return new
    if isinstance(m, nn.BatchNorm2d):
        if m.momentum is None:
            raise ValueError(
                "fold packing needs BatchNorm with a fixed momentum "
                "(momentum=None averages over a shared batch count)"
            )
        new = PackedBatchNorm2d(
            k,
            k * m.num_features,
            eps=m.eps,
            momentum=m.momentum,
            affine=m.affine,
            track_running_stats=m.track_running_stats,
            device=_device(m),
        )
        with torch.no_grad():
            if m.affine:
                new.weight.copy_(_cat([x.weight for x in mods]))
                new.bias.copy_(_cat([x.bias for x in mods]))
            if m.track_running_stats:
                new.running_mean.copy_(_cat([x.running_mean for x in mods]))
                new.running_var.copy_(_cat([x.running_var for x in mods]))
                new.fold_batches.copy_(torch.stack([x.num_batches_tracked for x in mods]))
        return new
    if isinstance(m, Dropout):
        return PackedDropout(mods)  # type: ignore[arg-type]
    if isinstance(m, nn.Linear):
        new = PackedLinear(k, m.in_features, m.out_features).to(m.weight.device)
        with torch.no_grad():
            new.weight.copy_(torch.stack([x.weight.detach() for x in mods]))
            if m.bias is not None:
                new.bias.copy_(torch.stack([x.bias.detach() for x in mods]))
        return new
    if any(True for _ in m.parameters(recurse=False)) or any(
        True for _ in m.buffers(recurse=False)
    ):
        raise ValueError(
            f"fold packing does not know how to pack {type(m).__name__}; "
            "only Conv2d, BatchNorm2d, Linear and parameter-free modules"
        )
    return None


def pack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One network computing all k models at once: input ``(B, Ck, H, W)``, output
    ``(B, k, C)``. The models must share one architecture; they are not modified."""
    if not models:
        raise ValueError("pack_models needs at least one model")
    if getattr(models[0], "drop_rate", 0.0):
        raise ValueError(
            "fold packing cannot reproduce per-fold dropout draws; use drop_rate=0 or pack_folds=1"
        )
    packed = copy.deepcopy(models[0])
    named = [dict(m.named_modules()) for m in models]
    for name, module in list(models[0].named_modules()):
        if name == "" or any(True for _ in module.children()):
            continue
        new = _pack_module([n[name] for n in named])
        if new is not None:
            parent_name, _, attr = name.rpartition(".")
            parent = packed.get_submodule(parent_name) if parent_name else packed
            setattr(parent, attr, new)
    packed.pack_k = len(models)
    return packed


def unpack(packed: nn.Module, k: int) -> list[dict[str, torch.Tensor]]:
    """The k ordinary state dicts inside ``packed`` (the inverse of ``pack_models``)."""
    states: list[dict[str, torch.Tensor]] = [{} for _ in range(k)]
    for name, module in packed.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, PackedLinear):
            for f in range(k):
                states[f][prefix + "weight"] = module.weight.detach()[f].clone()
                states[f][prefix + "bias"] = module.bias.detach()[f].clone()
            continue
        for key, t in [
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        ]:
            if key in ("fold_batches", "active"):
                continue
            for f in range(k):
                if key == "num_batches_tracked":
                    states[f][prefix + key] = module.fold_batches[f].clone()
                else:
                    states[f][prefix + key] = t.detach().chunk(k, dim=0)[f].clone()
    return states


def set_active(packed: nn.Module, active: Sequence[int] | None) -> None:
    """Mark which folds have real input in the next training forward (None: all of them)."""
    mask = None
    for m in packed.modules():
        if isinstance(m, PackedDropout):
            m.folds = None if active is None else list(active)
        elif isinstance(m, PackedBatchNorm2d):
            m.partial = active is not None
            if active is not None:
                if mask is None:  # built once, on the device the buffers live on
                    mask = torch.zeros(m.k, dtype=torch.bool)
                    mask[list(active)] = True
                    mask = mask.to(m.active.device, non_blocking=True)
                m.active.copy_(mask)


def _fold_rows(t: torch.Tensor, k: int) -> torch.Tensor:
    """A packed parameter as (k, C, ...): dim 0 of every packed tensor is fold-major.
    Splitting dim 0 only is a view in any memory format (channels_last included)."""
    return t.unflatten(0, (k, t.shape[0] // k))


class PackedOptimizer:
    """Adam / AdamW / SGD over packed parameters with per-fold step counts.

    Same arithmetic as ``torch.optim.Adam`` (single-tensor path): moments are elementwise,
    the bias corrections use each fold's own step count. ``step(active)`` updates the rows
    of the active folds only; the others keep parameters and moments bit for bit.

    ``foreach`` (default): a step where every fold is active runs each elementwise op once
    over all parameters (``torch._foreach_*``: on CUDA a few multi-tensor kernels instead
    of ~8 per parameter; the same kernels one by one on the CPU, so the same bits). The
    per-fold scalars are copied to the device without waiting for it (no stream sync).
    """

    def __init__(
        self, params: Sequence[nn.Parameter], k: int, config: Config, *, foreach: bool = True
    ) -> None:
        o = config.optim
        self.params = [p for p in params if p.requires_grad]
        self.k, self.name, self.lr, self.wd = k, o.name, o.lr, o.weight_decay
        self.momentum, self.betas, self.eps = o.momentum, (0.9, 0.999), 1e-8
        self.foreach = foreach
        self.steps = [0] * k
        self.state = [
            {"m": torch.zeros_like(p), "v": torch.zeros_like(p) if o.name != "sgd" else None}
            for p in self.params
        ]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def advance(self, rows: Sequence[int]) -> torch.Tensor:
        """Count one more step for the folds ``rows``; their Adam scalars as a (2, m) CPU
        table: step size lr / (1 - b1^t) and sqrt bias correction sqrt(1 - b2^t), computed
        in double as ``torch.optim.Adam`` does."""
        for f in rows:
            self.steps[f] += 1
        b1, b2 = self.betas
        steps = [self.steps[f] for f in rows]
        return torch.tensor(
            [[self.lr / (1 - b1**s) for s in steps], [(1 - b2**s) ** 0.5 for s in steps]]
        )

    @torch.no_grad()
    def step(self, active: Sequence[int]) -> None:
        rows = list(active)
        # Copied without waiting for the device (no stream sync).
        table = self.advance(rows).to(self.params[0].device, non_blocking=True)
        full = len(rows) == self.k
        if full:
            self.step_all(table)
            return
        step_size, bc2_sqrt = table[0][:, None], table[1][:, None]
        index = torch.tensor(rows).to(self.params[0].device, non_blocking=True)
        for views, shape in self._fold_views():
            # On copies of the active rows, written back into them.
            work = [v.index_select(0, index) for v in views]
            self._update(work, step_size.view(shape), bc2_sqrt.view(shape))
            for target, src in zip(views[:1] + views[2:], work[:1] + work[2:], strict=True):
                target.index_copy_(0, index, src)

    @torch.no_grad()
    def step_all(self, table: torch.Tensor) -> None:
        """Update every fold with the (2, k) ``table`` of ``advance`` on the device. Takes no
        decision on the host, so it can be captured in a CUDA graph with a static table."""
        step_size, bc2_sqrt = table[0][:, None], table[1][:, None]  # (k, 1) each
        if self.foreach:
            self._step_foreach(step_size, bc2_sqrt)
            return
        for views, shape in self._fold_views():
            self._update(views, step_size.view(shape), bc2_sqrt.view(shape))  # in place

    def _fold_views(self) -> Iterator[tuple[list[torch.Tensor], tuple[int, ...]]]:
        """Per parameter with a gradient: (k, ...) views of it, its gradient and moments,
        and the shape that broadcasts a per-fold scalar (k,) over them (on dim 0)."""
        for p, st in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            views = [_fold_rows(t, self.k) for t in (p, p.grad, st["m"])]
            if st["v"] is not None:
                views.append(_fold_rows(st["v"], self.k))
            yield views, (-1,) + (1,) * (views[0].ndim - 1)

    def _update(
        self, t: list[torch.Tensor], step_size: torch.Tensor, bc2_sqrt: torch.Tensor
    ) -> None:
        p, g, m = t[0], t[1], t[2]
        if self.name == "sgd":
            if self.wd:
                g = g.add(p, alpha=self.wd)
            m.mul_(self.momentum).add_(g)  # buf starts at 0: first step gives buf = g
            p.add_(m, alpha=-self.lr)
            return
        v = t[3]
        b1, b2 = self.betas
        if self.name == "adamw":
            p.mul_(1 - self.lr * self.wd)
        elif self.wd:
            g = g.add(p, alpha=self.wd)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
        p.sub_(m / denom * step_size)

    def _step_foreach(self, step_size: torch.Tensor, bc2_sqrt: torch.Tensor) -> None:
        """``_update`` for all folds and all parameters at once, op for op."""
        live = [
            (p, st) for p, st in zip(self.params, self.state, strict=True) if p.grad is not None
        ]
        if not live:
            return
        ps = [_fold_rows(p, self.k) for p, _ in live]
        gs = [_fold_rows(p.grad, self.k) for p, _ in live]
        ms = [_fold_rows(st["m"], self.k) for _, st in live]
        if self.name == "sgd":
            if self.wd:
                gs = torch._foreach_add(gs, ps, alpha=self.wd)
            torch._foreach_mul_(ms, self.momentum)
            torch._foreach_add_(ms, gs)
            torch._foreach_add_(ps, ms, alpha=-self.lr)
            return
        vs = [_fold_rows(st["v"], self.k) for _, st in live]
        b1, b2 = self.betas
        if self.name == "adamw":
            torch._foreach_mul_(ps, 1 - self.lr * self.wd)
        elif self.wd:
            gs = torch._foreach_add(gs, ps, alpha=self.wd)
        # per-fold scalars, one (k, 1, ...) view per parameter rank
        views = {p.ndim: (-1,) + (1,) * (p.ndim - 1) for p in ps}
        ss = {n: step_size.view(shape) for n, shape in views.items()}
        bc = {n: bc2_sqrt.view(shape) for n, shape in views.items()}
        torch._foreach_lerp_(ms, gs, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [bc[p.ndim] for p in ps])
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(ms, denom)
        torch._foreach_mul_(update, [ss[p.ndim] for p in ps])
        torch._foreach_sub_(ps, update)


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
