"""The paper's reported numbers as data, and when a run is comparable with them.

Ren, Chen, Wang, Chen, J. Chongqing Technology and Business University 41(1):21-29, 2024.
All numbers are CASME II, 5 classes, LOSO, (accuracy, UF1) on predictions pooled over folds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PAPER = "Ren et al. 2024"

# Table 3: method -> (accuracy, UF1 or None where the paper prints "-").
TABLE3: dict[str, tuple[float, float | None]] = {
    "LBP-TOP+AdaBoost": (0.4378, 0.3337),
    "LBP-SIP": (0.4656, 0.4480),
    "ELRCN": (0.5244, 0.5000),
    "STCLQP": (0.5839, 0.5836),
    "FDM": (0.4196, 0.2972),
    "SDF": (0.4730, None),
    "SE-ResNeXt-50 + apex (Ren et al. 2024)": (0.5926, 0.5853),
}

# Table 4 (ablation): (registry model name, frame) -> (accuracy, UF1).
# frame "apex" = the apex frame; "mid" = the paper's "non-apex" frame, midway onset..apex.
TABLE4: dict[tuple[str, str], tuple[float, float]] = {
    ("resnet50", "apex"): (0.4814, 0.4599),
    ("resnext50_32x4d", "apex"): (0.5556, 0.5059),
    ("seresnext50_32x4d", "apex"): (0.5926, 0.5853),
    ("resnet50", "mid"): (0.4457, 0.3739),
    ("resnext50_32x4d", "mid"): (0.5185, 0.4534),
    ("seresnext50_32x4d", "mid"): (0.5756, 0.5013),
}

MODEL_TITLES = {
    "resnet50": "ResNet-50",
    "resnext50_32x4d": "ResNeXt-50",
    "seresnext50_32x4d": "SE-ResNeXt-50",
}
FRAME_TITLES = {"apex": "apex frame", "mid": "non-apex frame"}
FRAME_ALIASES = {
    "apex": "apex",
    "mid": "mid",
    "non-apex": "mid",
    "nonapex": "mid",
    "non_apex": "mid",
}


@dataclass(frozen=True)
class PaperSetting:
    """The setting under which TABLE3/TABLE4 apply (METHOD.md sections 6-8)."""

    dataset: str = "casme2"
    classes: tuple[str, ...] = ("disgust", "happiness", "others", "repression", "surprise")
    n_samples: int = 249  # implies the 2019 coding sheet (2014 gives 246)
    n_subjects: int = 26
    protocol: str = "loso"  # predictions pooled over folds, then scored
    input_size: int = 224
    epochs: int = 100
    batch_size: int = 2
    optimizer: str = "adam"
    lr: float = 1e-4
    loss: str = "focal"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PAPER_SETTING = PaperSetting()


@dataclass(frozen=True)
class PaperRow:
    """The paper's number for one (model, frame) cell of Table 4."""

    model: str
    frame: str
    accuracy: float
    uf1: float

    @property
    def title(self) -> str:
        return f"{MODEL_TITLES[self.model]}, {FRAME_TITLES[self.frame]} ({PAPER}, Table 4)"


def normalize_frame(frame: str | None) -> str | None:
    """``apex`` / ``mid``; accepts ``non-apex`` spellings; None if unknown."""
    return FRAME_ALIASES.get(str(frame).lower()) if frame is not None else None


def paper_mismatch(setting: dict[str, Any], require: bool = True) -> list[str]:
    """Reasons why ``setting`` is not comparable with the paper; empty when it is.

    Required keys (a missing one is a reason unless ``require=False``): ``dataset``,
    ``model``, ``frame`` and ``num_classes`` or ``classes``. Checked when present:
    ``classes`` (names), ``input``, ``protocol``, ``n_samples``, ``n_subjects``, ``oracle``.
    """
    p = PAPER_SETTING
    reasons = []
    dataset = setting.get("dataset")
    if (require or dataset is not None) and str(dataset).lower() != p.dataset:
        reasons.append(f"dataset is {dataset!r}, the paper used CASME II")
    classes = setting.get("classes")
    k = setting.get("num_classes", len(classes) if classes is not None else None)
    if (require or k is not None) and k != len(p.classes):
        reasons.append(f"{k} classes, the paper used {len(p.classes)}")
    elif classes is not None and sorted(map(str, classes)) != sorted(p.classes):
        reasons.append(f"classes {sorted(classes)} differ from the paper's {list(p.classes)}")
    model = setting.get("model")
    frame = normalize_frame(setting.get("frame"))
    if model not in MODEL_TITLES:
        reasons.append(f"model {model!r} is not one of the paper's ({', '.join(MODEL_TITLES)})")
    if frame is None:
        reasons.append(
            f"input frame {setting.get('frame')!r} is not the paper's apex or non-apex (mid) frame"
        )
    if setting.get("input", "frame") != "frame":
        reasons.append(
            f"input {setting.get('input')!r} (the paper classifies the frame itself, not a "
            "difference to the onset)"
        )
    if setting.get("oracle"):
        reasons.append("oracle run (epochs chosen on the held-out subject)")
    protocol = setting.get("protocol")
    if protocol is not None and "loso" not in str(protocol).lower().replace("-", ""):
        reasons.append(f"protocol {protocol!r}, the paper used LOSO")
    for key in ("n_samples", "n_subjects"):
        value = setting.get(key)
        if value is not None and int(value) != getattr(p, key):
            reasons.append(f"{value} {key[2:]}, the paper used {getattr(p, key)}")
    return reasons


def matching_paper_row(setting: dict[str, Any]) -> PaperRow | None:
    """The paper's Table 4 cell for a run's ``setting``, or None when not comparable."""
    if paper_mismatch(setting):
        return None
    model, frame = setting["model"], normalize_frame(setting["frame"])
    acc, f1 = TABLE4[(model, frame)]
    return PaperRow(model=model, frame=frame, accuracy=acc, uf1=f1)


def recipe_differences(setting: dict[str, Any]) -> list[str]:
    """Training-recipe keys present in ``setting`` that differ from the paper's (caveats)."""
    p = PAPER_SETTING.as_dict()
    out = []
    for key in ("input_size", "epochs", "batch_size", "optimizer", "lr", "loss"):
        if key in setting and setting[key] is not None:
            ours, theirs = setting[key], p[key]
            same = (
                str(ours).lower() == str(theirs).lower()
                if isinstance(theirs, str)
                else float(ours) == float(theirs)
            )
            if not same:
                out.append(f"{key} {ours} (paper {theirs})")
    # The paper trains one network and scores each input once.
    for key, theirs in (("ensemble", 1), ("tta", "none")):
        if setting.get(key) not in (None, theirs):
            out.append(f"{key} {setting[key]} (paper {theirs})")
    return out
