"""Published numbers on the MEGC 2019 composite, and when a run is comparable with them.

The field's honest re-runs (fixed epochs, the last epoch's model, no choice made on the
held-out subject; macro-F1 of predictions pooled over LOSO folds; METHOD.md sections 10,
11): SSSNet 0.739, STSTNet 0.713, OFF-ApexNet 0.703 UF1. Numbers with the epoch chosen on
the held-out subject (0.774, 0.839, ...) are left out on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COMPOSITE_LABEL = "MEGC 2019 composite, LOSO, fixed epochs"


@dataclass(frozen=True)
class CompositeSetting:
    """The composite: CASME II 145 + SAMM 133 + SMIC 164 clips, 68 subjects, 3 classes."""

    datasets: tuple[str, ...] = ("casme2", "samm", "smic")
    classes: tuple[str, ...] = ("negative", "positive", "surprise")
    n_samples: int = 442
    n_subjects: int = 68
    protocol: str = "loso"


COMPOSITE = CompositeSetting()
# method -> pooled UF1 of its honest re-run (UAR and accuracy not stated here: "–")
COMPOSITE_RERUNS: dict[str, float] = {"SSSNet": 0.739, "STSTNet": 0.713, "OFF-ApexNet": 0.703}


def composite_mismatch(setting: dict[str, Any]) -> list[str]:
    """Why ``setting`` (``protocol.run_setting``) is not comparable with the composite's
    published re-runs; empty when it is."""
    c = COMPOSITE
    reasons = []
    datasets = sorted(str(setting.get("dataset", "")).split("+"))
    if datasets != sorted(c.datasets):
        reasons.append(f"datasets {'+'.join(datasets)}, the composite is {'+'.join(c.datasets)}")
    classes = sorted(map(str, setting.get("classes") or []))
    if classes != sorted(c.classes):
        reasons.append(f"classes {classes}, the composite's are {list(c.classes)}")
    protocol = str(setting.get("protocol", "")).lower()
    if protocol != c.protocol:
        reasons.append(f"protocol {protocol or '?'}, the published re-runs are LOSO")
    if setting.get("oracle"):
        reasons.append("oracle run (epochs chosen on the held-out subject)")
    for key in ("n_samples", "n_subjects"):
        value = setting.get(key)
        if value is not None and int(value) != getattr(c, key):
            reasons.append(f"{value} {key[2:]}, the composite has {getattr(c, key)}")
    return reasons
