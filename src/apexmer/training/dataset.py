"""A manifest's network inputs as one in-memory tensor, ready for training.

A CASME II-sized corpus at 224 px is ~37 MB as uint8 (flow at 28 px: ~3 MB as float16), so
every fold and epoch reads from memory; nothing is decoded twice. What each sample's input
is comes from the input registry (``training/inputs.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from apexmer.config import DataConfig
from apexmer.data.crops import FRAME_FIELDS
from apexmer.data.frames import read_image
from apexmer.data.manifest import read_manifest
from apexmer.data.sample import Problem, Sample, SampleSet
from apexmer.errors import DataError, FrameError
from apexmer.training.inputs import FLOW_FIELDS, get_input, read_flow_file


def file_problem(sample: Sample, exc: FrameError) -> Problem:
    """A sample left out for a bad file: the file named once, then what is wrong and the fix."""
    if exc.file is None:
        return Problem(file=sample.key, sample=sample.key, message=str(exc))
    message = exc.message + (f" Fix: {exc.fix}" if exc.fix else "")
    return Problem(file=exc.file, sample=sample.key, message=message)


def load_inputs(
    samples: Sequence[Sample], data: DataConfig
) -> tuple[torch.Tensor, list[int], list[Problem]]:
    """The network input (``data.input``) of every sample.

    Returns ``(inputs (N, C, S, S) in the kind's dtype, kept indices into samples,
    problems)``: a sample whose file is missing or unreadable is left out and reported,
    never fatal.
    """
    kind = get_input(data.input)
    arrays: list[np.ndarray] = []
    kept: list[int] = []
    problems: list[Problem] = []
    for i, sample in enumerate(samples):
        try:
            arrays.append(kind.from_sample(sample, data))
        except FrameError as exc:
            problems.append(file_problem(sample, exc))
            continue
        kept.append(i)
    if not arrays:
        c, s = len(kind.channels(data)), data.input_size
        return torch.empty((0, c, s, s), dtype=kind.dtype), kept, problems
    return torch.from_numpy(np.stack(arrays)), kept, problems


def check_manifest_files(sample_set: SampleSet) -> SampleSet:
    """Read every file each sample names (crops with ``read_image``, flows with
    ``read_flow_file``: the checks training applies) and move a sample with a bad one into
    ``problems``; what ``apexmer data summary --corpus manifest`` reports before a run."""
    kept: list[Sample] = []
    problems = list(sample_set.problems)
    for sample in sample_set.samples:
        try:
            for field in (*FRAME_FIELDS.values(), *FLOW_FIELDS.values()):
                path = getattr(sample, field)
                if path is None:
                    continue
                if field in FLOW_FIELDS.values():
                    read_flow_file(path)
                else:
                    read_image(path)
        except FrameError as exc:
            problems.append(file_problem(sample, exc))
            continue
        kept.append(sample)
    return SampleSet(
        kept, sample_set.classes, sample_set.coding_version, sample_set.source, problems
    )


def why_none_usable(problems: Sequence[Problem], manifest: Path, shown: int = 3) -> str:
    """The reasons no sample of a manifest is usable: the first ``shown`` problems (a file
    not found names the path it tried) and how relative paths are resolved."""
    if not problems:
        return "the manifest has no rows"
    first = "; ".join(
        (f"row {p.row}: " if p.row is not None else f"{p.sample or p.file}: ")
        + p.message.partition(" Fix: ")[0]  # one "Fix:" per error: the one below
        for p in problems[:shown]
    )
    more = f" (+{len(problems) - shown} more)" if len(problems) > shown else ""
    folder = manifest.absolute().parent
    return (
        f"{len(problems)} sample(s) left out; first: {first}{more}. Relative paths in the "
        f"manifest are resolved against the manifest's folder, {folder}"
    )


@dataclass
class ManifestData:
    """A manifest's samples with their network inputs loaded: what training needs."""

    samples: list[Sample]
    inputs: torch.Tensor  # (N, C, S, S): uint8 RGB images or float16 flow
    labels: torch.Tensor  # (N,) int64, indices into classes
    classes: tuple[str, ...]
    groups: list[str]  # "dataset/subject" per sample (the LOSO groups)
    coding_version: str
    problems: list[Problem]
    manifest: Path
    digest: str  # identifies the exact data (keys, labels, input values)


def load_manifest_data(manifest: str | Path, data: DataConfig) -> ManifestData:
    """Read a manifest and load every sample's input; bad samples are left out and
    reported in ``problems``; no usable sample at all is an error."""
    manifest = Path(manifest)
    sample_set = read_manifest(manifest)
    inputs, kept, problems = load_inputs(sample_set.samples, data)
    samples = [sample_set.samples[i] for i in kept]
    if not samples:
        raise DataError(
            f"no usable samples for data.input={data.input}: "
            + why_none_usable([*sample_set.problems, *problems], manifest),
            file=manifest,
            fix="correct those paths (relative to the manifest's folder, or absolute) or "
            "re-run preprocessing; `apexmer data summary --corpus manifest --coding "
            f"{manifest}` lists every problem",
        )
    labels = torch.tensor([sample_set.label_index(s.label) for s in samples])
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{s.key}|{s.label}\n".encode())
    digest.update(inputs.numpy().tobytes())
    return ManifestData(
        samples=samples,
        inputs=inputs,
        labels=labels,
        classes=sample_set.classes,
        groups=[s.group for s in samples],
        coding_version=sample_set.coding_version,
        problems=[*sample_set.problems, *problems],
        manifest=manifest,
        digest=digest.hexdigest()[:16],
    )
