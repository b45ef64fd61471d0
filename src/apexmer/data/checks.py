"""Frame checks of a sample set: every reader with a ``root`` runs them, so a missing
folder, an unreadable key frame or a gap inside a clip is a reported problem, not a crash
later."""

from __future__ import annotations

from pathlib import Path

import cv2

from apexmer.data.frames import FolderFrames, image_file_issue
from apexmer.data.sample import Problem, Sample, SampleSet
from apexmer.errors import FrameError


def check_frames(sample_set: SampleSet) -> SampleSet:
    """Keep the samples whose frames are usable; move the others into ``problems``.

    For each sample with ``frames`` set: the folder exists and holds numbered images (or
    the video opens), the onset, apex and offset frames (the first frame when none is
    known) exist and decode, none is missing between onset and offset, and every frame of
    onset..offset is an image (magic bytes and header) that is not cut short. Never
    raises for a per-sample issue.
    """
    kept: list[Sample] = []
    problems = list(sample_set.problems)
    for sample in sample_set.samples:
        issue = frame_issue(sample)
        if issue is None:
            kept.append(sample)
            continue
        row = sample.extra.get("row")
        message = issue.message + (f" (coding row {row})" if row is not None else "")
        message += f". Fix: {issue.fix}" if issue.fix else ""
        problems.append(Problem(issue.file or str(sample.frames), message, sample=sample.key))
    return SampleSet(
        kept, sample_set.classes, sample_set.coding_version, sample_set.source, problems
    )


def frame_issue(sample: Sample) -> FrameError | None:
    """Why a sample's frames are unusable (file, message and fix), or None when they are
    fine or not given."""
    if sample.frames is None:
        return None
    path = Path(sample.frames)
    # A coded apex outside onset..offset (kept, flagged) need not exist: the apex policy of
    # preprocessing decides whether it is used.
    apex = None if sample.extra.get("apex_outside") else sample.apex
    wanted = [n for n in (sample.onset, apex, sample.offset) if n is not None]
    if not path.exists():
        return FrameError(
            "frame folder or video not found",
            file=path,
            fix="check --root and that the clip's folder exists at this path",
        )
    if path.is_file():
        return _video_issue(path, wanted)
    try:
        source = FolderFrames(path)
        for number in dict.fromkeys(wanted or source.numbers[:1]):
            source.read(number)
    except FrameError as exc:
        return exc
    span = source.numbers
    if sample.onset is not None and sample.offset is not None:
        present = set(source.numbers)
        missing = [n for n in range(sample.onset, sample.offset + 1) if n not in present]
        if missing:
            shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
            return FrameError(
                f"{len(missing)} frame(s) missing between onset {sample.onset} and offset "
                f"{sample.offset}: {shown}",
                file=path,
                fix="restore the missing frames (spotting compares frames 3 apart)",
            )
        span = [n for n in source.numbers if sample.onset <= n <= sample.offset]
    # Spotting reads every frame of the span; one that is not an image (an HTML error page
    # saved as img226.jpg), has a broken header or is cut short (an interrupted copy) is
    # found here from its magic bytes, header and end, without decoding it.
    for number in span:
        issue = image_file_issue(source.file(number))
        if issue is not None:
            return issue
    return None


def _video_issue(path: Path, wanted: list[int]) -> FrameError | None:
    # Opening and reading one frame is enough here; decoding the whole clip is the
    # preprocessing stage's job.
    cap = cv2.VideoCapture(str(path))
    try:
        ok = cap.isOpened() and cap.read()[0]
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
    finally:
        cap.release()
    if not ok:
        return FrameError(
            "video cannot be opened or has no frames",
            file=path,
            fix="convert it to mp4 (H.264) or a frame folder",
        )
    if count > 0 and wanted and max(wanted) >= count:
        return FrameError(
            f"frame {max(wanted)} is beyond the video's {count} frames",
            file=path,
            fix="use 0-based frame indices inside the video",
        )
    return None
