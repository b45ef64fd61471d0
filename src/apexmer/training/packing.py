"""Fold packing of networks: k models as ONE grouped network (see ``training/packed.py``
for why, and for the trainer that uses it).

Every layer becomes k times wider and k times more grouped: ``Conv2d(in, out, groups=g)``
-> ``Conv2d(k*in, k*out, groups=k*g)`` (weights concatenated on dim 0), ``BatchNorm2d(C)``
-> ``PackedBatchNorm2d(k*C)``, the classifier -> ``PackedLinear`` (per-fold logits), each
fold's ``layers.Dropout`` -> one ``PackedDropout`` drawing each fold's mask from that
fold's own generator. ``unpack`` gives the k models' state dicts back; ``set_active``
restricts a step to some folds.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from apexmer.models.layers import Dropout


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
