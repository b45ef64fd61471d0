"""SMIC-HS reader: no coding sheet, the labels are the folder names.

Layout: ``root/s1/micro/{negative,positive,surprise}/s1_ne_01/image586599.bmp`` (one image
per frame, the number in the name is the absolute frame number). Subject folders may be
named ``s1`` or ``s01``; the subject id is normalised to ``s01`` (as in the MEGC 2019
list); the clip id is the clip folder's own name. SMIC has no apex labels.
"""

from __future__ import annotations

import re
from pathlib import Path

from apexmer.data.checks import check_frames
from apexmer.data.frames import list_frames
from apexmer.data.labels import SMIC_EMOTIONS, class_names, label_map
from apexmer.data.sample import Problem, Sample, SampleSet
from apexmer.errors import DataError, FrameError

_SUBJECT = re.compile(r"^s?(\d+)$", re.IGNORECASE)
SMIC_FIX = "point --root at SMIC-HS's folder that holds s1, s2, ... (each with micro/)"


def smic_subject(name: str) -> str | None:
    """``s1``, ``s01`` or ``1`` -> ``s01``; None when it is no subject id."""
    m = _SUBJECT.match(str(name).strip())
    return f"s{int(m.group(1)):02d}" if m else None


def read_smic(root: str | Path, classes: str = "3class") -> SampleSet:
    """Read SMIC-HS from its folder tree; onset/offset are the first/last frame numbers.

    Folders that do not fit the layout (no ``micro/``, an unknown emotion folder, a clip
    without images) go to ``problems``; the onset and offset frames are checked to decode.
    """
    root = Path(root)
    mapping = label_map("smic", classes)
    if not root.is_dir():
        raise DataError("SMIC-HS folder not found", file=root, fix=SMIC_FIX)
    subjects = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name[:1] in "sS" and smic_subject(p.name)),
        key=lambda p: smic_subject(p.name) or "",
    )
    if not subjects:
        raise DataError("no subject folders (s1, s2, ...) here", file=root, fix=SMIC_FIX)
    samples: list[Sample] = []
    problems: list[Problem] = []
    for folder in subjects:
        subject = smic_subject(folder.name) or folder.name
        micro = folder / "micro"
        if not micro.is_dir():
            problems.append(
                Problem(
                    str(folder),
                    "no micro/ folder. Fix: keep SMIC-HS's layout s1/micro/<emotion>/<clip>/",
                )
            )
            continue
        for emotion_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            emotion = emotion_dir.name.lower()
            if emotion not in SMIC_EMOTIONS:
                problems.append(
                    Problem(
                        str(emotion_dir),
                        f"unknown emotion folder "
                        f"{emotion_dir.name!r}. Fix: name it one of "
                        f"{', '.join(SMIC_EMOTIONS)}",
                    )
                )
                continue
            for clip_dir in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                key = f"smic/{subject}/{clip_dir.name}"
                try:
                    numbers = [n for n, _ in list_frames(clip_dir)]
                except FrameError as exc:
                    problems.append(Problem(str(clip_dir), _frame_message(exc), sample=key))
                    continue
                if emotion not in mapping:
                    continue
                samples.append(
                    Sample(
                        dataset="smic",
                        subject=subject,
                        clip=clip_dir.name,
                        label=mapping[emotion],
                        frames=clip_dir,
                        onset=numbers[0],
                        apex=None,
                        offset=numbers[-1],
                        emotion=emotion,
                    )
                )

    return check_frames(SampleSet(samples, class_names(mapping), "smic-hs", str(root), problems))


def _frame_message(exc: FrameError) -> str:
    return exc.message + (f" Fix: {exc.fix}" if exc.fix else "")
