"""An ensemble of K networks of one architecture as one module (``train.ensemble``).

Its state dict holds member k's tensors under ``members.<k>.``: one checkpoint carries all
K members. ``forward`` returns the log of the members' mean softmax, so that a softmax of
its output is their averaged probabilities; ``training.engine.predict_proba`` averages the
members' softmax directly (the same numbers without the log/exp round trip).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """K member networks; input ``(B, C, H, W)`` -> ``(B, classes)`` log mean probability."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an Ensemble needs at least two members; use the network itself")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(1) for m in self.members]).mean(0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
