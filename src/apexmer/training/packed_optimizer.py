"""Adam / AdamW / SGD over packed parameters (``training/packing.py``), one step count
per fold, so each fold is optimised exactly as ``torch.optim`` would optimise it alone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from apexmer.config import Config


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
