"""Focal loss for multi-class softmax classification (Lin et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from apexmer.errors import ConfigError

_REDUCTIONS = ("mean", "sum", "none")


class FocalLoss(nn.Module):
    """FL = -alpha_t (1 - p_t)^gamma log p_t, with p_t the softmax probability of the target.

    ``gamma=0, alpha=None`` is exactly cross-entropy. ``alpha`` is a per-class weight (a
    sequence or tensor of length C), a single float (the same weight for every class), or
    None (1 for every class).

    Normalisation: ``reduction="mean"`` divides the weighted sum by the number of samples
    N, not by the sum of the weights as ``F.cross_entropy(weight=...)`` does. With the
    paper's batch of 2, dividing by the weights would cancel alpha whenever both samples
    share a class. So with gamma 0, "sum" equals weighted cross-entropy with "sum", and
    "mean" equals that sum / N.
    """

    alpha: torch.Tensor | None

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
            raise ConfigError(f"FocalLoss gamma must be a finite number >= 0, got {gamma!r}")
        if reduction not in _REDUCTIONS:
            raise ConfigError(
                f"FocalLoss reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        self.gamma = float(gamma)
        self.reduction = reduction
        self.register_buffer("alpha", _check_alpha(alpha), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (N, C) float, ``target`` (N,) class indices -> loss (scalar or (N,))."""
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"FocalLoss expects logits (N, C) and target (N,), got "
                f"{tuple(logits.shape)} and {tuple(target.shape)}"
            )
        num_classes = logits.shape[1]
        target = target.long()
        if target.device.type == "cpu":  # on a GPU reading the range would wait for it:
            check_targets(target, num_classes)  # the trainers check labels once, up front
        # log_softmax keeps log p_t finite for extreme logits (softmax then log would not).
        logp_t = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)  # (N,)
        loss = -logp_t
        if self.gamma > 0:
            # 1 - p_t as -expm1(log p_t): exact near p_t = 1. The floor keeps the gradient
            # of x^gamma finite (gamma < 1) when p_t rounds to exactly 1.
            one_minus_p = (-torch.expm1(logp_t)).clamp_min(torch.finfo(logp_t.dtype).tiny)
            loss = one_minus_p.pow(self.gamma) * loss
        if self.alpha is not None:
            if self.alpha.ndim == 0:
                loss = self.alpha * loss
            elif self.alpha.numel() != num_classes:
                raise ConfigError(
                    f"FocalLoss alpha has {self.alpha.numel()} entries but the "
                    f"logits have {num_classes} classes; give one per class"
                )
            else:
                loss = self.alpha.to(loss.dtype)[target] * loss
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        alpha = None if self.alpha is None else [round(a, 4) for a in self.alpha.flatten().tolist()]
        return f"gamma={self.gamma}, alpha={alpha}, reduction={self.reduction!r}"


def check_targets(target: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError unless every class index of ``target`` is in [0, num_classes)."""
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(
            f"class labels out of range [0, {num_classes}): "
            f"min {int(target.min())}, max {int(target.max())}"
        )


def _check_alpha(alpha: float | Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    if alpha is None:
        return None
    if isinstance(alpha, (int, float)):
        tensor = torch.tensor(float(alpha))
    else:
        tensor = torch.as_tensor(alpha, dtype=torch.float32).detach().clone()
        if tensor.ndim != 1 or tensor.numel() == 0:
            raise ConfigError(
                f"FocalLoss alpha must be a float or a 1-D list with one weight "
                f"per class, got shape {tuple(tensor.shape)}"
            )
    if not torch.isfinite(tensor).all() or (tensor < 0).any():
        raise ConfigError(f"FocalLoss alpha must be finite and >= 0, got {tensor.tolist()}")
    return tensor.float()


def class_balanced_alpha(
    counts: Sequence[int] | torch.Tensor, beta: float | None = None, power: float = 1.0
) -> torch.Tensor:
    """Per-class weights from training-set class counts, normalised to mean 1.

    ``beta=None``: inverse frequency to a power, 1 / n_k^power (``power=1`` is plain inverse
    frequency; ``0.5``, inverse square root, is the softer weighting of Mahajan et al. 2018
    and Mikolov et al.'s sub-sampling, which moves the decision boundary less towards the
    large class than plain inverse frequency does). ``beta`` in [0, 1): inverse effective
    number (1 - beta) / (1 - beta^n_k) of Cui et al. 2019. A class with no samples gets
    weight 0 (it never appears as a target, e.g. absent from a LOSO fold) and is left out of
    the mean.
    """
    n = torch.as_tensor(counts, dtype=torch.float64)
    if n.ndim != 1 or n.numel() == 0 or (n < 0).any() or not torch.isfinite(n).all():
        raise ConfigError(f"class counts must be a non-empty list of counts >= 0, got {counts!r}")
    if not (math.isfinite(power) and power >= 0):
        raise ConfigError(f"class-balanced power must be a finite number >= 0, got {power!r}")
    if beta is not None and not 0.0 <= beta < 1.0:
        raise ConfigError(f"class-balanced beta must be in [0, 1), got {beta!r}")
    present = n > 0
    if not present.any():
        raise ConfigError("class counts are all zero: no training samples")
    weights = torch.zeros_like(n)
    if beta is None:
        weights[present] = n[present] ** -power
    else:
        weights[present] = (1.0 - beta) / (1.0 - beta ** n[present])
    weights[present] /= weights[present].mean()
    return weights.float()
