"""Focal loss: cross-entropy at gamma 0, the per-sample formula, stability, validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.config import load_config
from apexmer.errors import ConfigError
from apexmer.training.engine import build_loss
from apexmer.training.losses import FocalLoss, class_balanced_alpha


def _batch(n: int, c: int, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return logits, torch.randint(0, c, (n,), generator=g)


batches = st.builds(
    _batch, st.integers(1, 8), st.integers(2, 7), st.integers(0, 2**31 - 1), st.floats(0.01, 30.0)
)


@settings(max_examples=40, deadline=None)
@given(batches, st.sampled_from(["mean", "sum", "none"]))
def test_gamma_zero_is_cross_entropy(batch, reduction: str) -> None:
    logits, target = batch
    got = FocalLoss(gamma=0.0, reduction=reduction)(logits, target)
    torch.testing.assert_close(got, F.cross_entropy(logits, target, reduction=reduction))


@settings(max_examples=40, deadline=None)
@given(batches, st.floats(0.1, 5.0))
def test_focal_never_exceeds_cross_entropy(batch, gamma: float) -> None:
    logits, target = batch
    focal = FocalLoss(gamma=gamma, reduction="none")(logits, target)
    ce = F.cross_entropy(logits, target, reduction="none")
    assert (focal <= ce + 1e-12).all() and (focal >= 0).all()


def test_gamma_zero_with_alpha_is_weighted_cross_entropy() -> None:
    logits, target = _batch(6, 4, seed=1, scale=2.0)
    alpha = [0.5, 2.0, 1.0, 3.0]
    ce_sum = F.cross_entropy(
        logits, target, weight=torch.tensor(alpha, dtype=torch.float64), reduction="sum"
    )
    torch.testing.assert_close(FocalLoss(0.0, alpha, reduction="sum")(logits, target), ce_sum)
    # "mean" divides by N, not by the sum of the weights as torch's weighted CE does.
    torch.testing.assert_close(FocalLoss(0.0, alpha)(logits, target), ce_sum / 6)


def test_matches_per_sample_formula() -> None:
    logits, target = _batch(5, 3, seed=2, scale=3.0)
    alpha = torch.tensor([0.25, 1.0, 2.0])
    got = FocalLoss(gamma=2.0, alpha=alpha, reduction="none")(logits, target)
    p_t = logits.softmax(1)[torch.arange(5), target]
    want = -alpha.double()[target] * (1 - p_t) ** 2 * torch.log(p_t)
    torch.testing.assert_close(got, want)
    scalar = FocalLoss(gamma=2.0, alpha=0.25, reduction="none")(logits, target)
    torch.testing.assert_close(scalar, -0.25 * (1 - p_t) ** 2 * torch.log(p_t))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradient_finite_for_extreme_logits(gamma: float) -> None:
    logits = torch.tensor(
        [[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-50.0, 80.0, 3.0]], requires_grad=True
    )
    target = torch.tensor([0, 1, 2])  # certain-right, certain-wrong, wrong
    loss = FocalLoss(gamma=gamma, alpha=[1.0, 2.0, 0.5])(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_alpha_buffer_follows_module_and_is_not_saved() -> None:
    loss = FocalLoss(alpha=[1.0, 2.0]).double()
    assert loss.alpha.dtype == torch.float64 and "alpha" not in loss.state_dict()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"alpha": [1.0, -0.5]}, ">= 0"),
        ({"alpha": -0.1}, ">= 0"),
        ({"alpha": [[1.0, 2.0]]}, "1-D"),
        ({"reduction": "avg"}, "reduction"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FocalLoss(**kwargs)


def test_invalid_inputs() -> None:
    logits, target = _batch(4, 3, seed=3, scale=1.0)
    with pytest.raises(ConfigError, match="3 classes"):
        FocalLoss(alpha=[1.0, 1.0])(logits, target)
    with pytest.raises(ValueError, match="out of range"):
        FocalLoss()(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        FocalLoss()(logits[None], target)


def test_class_balanced_alpha() -> None:
    torch.testing.assert_close(class_balanced_alpha([10, 5]), torch.tensor([2 / 3, 4 / 3]))
    w = class_balanced_alpha([99, 0, 27])  # absent class: weight 0, left out of the mean
    assert w[1] == 0 and torch.isclose(w[[0, 2]].mean(), torch.tensor(1.0))
    torch.testing.assert_close(class_balanced_alpha([3, 7], beta=0.0), torch.ones(2))
    eff = class_balanced_alpha([99, 63, 32, 28, 27], beta=0.99)
    assert torch.isclose(eff.mean(), torch.tensor(1.0)) and (eff.diff() > 0).all()
    # inverse square root: weights 1/sqrt(n) normalised to mean 1, between none and balanced
    sq = class_balanced_alpha([250, 109, 83], power=0.5)
    expected = torch.tensor([250, 109, 83], dtype=torch.float64) ** -0.5
    torch.testing.assert_close(sq, (expected / expected.mean()).float())
    full = class_balanced_alpha([250, 109, 83])
    assert (sq.max() / sq.min()) ** 2 == pytest.approx(float(full.max() / full.min()), rel=1e-5)
    bad_cases = (([], {}), ([0, 0], {}), ([-1, 2], {}), ([1, 2], {"beta": 1.0}))
    for bad, kwargs in (*bad_cases, ([1, 2], {"power": -1.0}), ([1, 2], {"power": math.nan})):
        with pytest.raises(ConfigError):
            class_balanced_alpha(bad, **kwargs)


def test_build_loss_weights_follow_the_config() -> None:
    y = torch.tensor([0] * 8 + [1] * 2)  # counts 8, 2
    balanced = build_loss(load_config("flow", ["loss.alpha=balanced"]), y, 3).alpha
    soft = build_loss(load_config("flow", ["loss.alpha=sqrt_balanced"]), y, 3).alpha
    torch.testing.assert_close(balanced, torch.tensor([0.4, 1.6, 0.0]))
    torch.testing.assert_close(soft, torch.tensor([2 / 3, 4 / 3, 0.0]))  # 1/sqrt(8) : 1/sqrt(2)
