"""Flows people already have: a folder of (u, v, strain) images plus the composite's labels.

STSTNet and HTNet distribute the MEGC 2019 composite (CASME II + SAMM + SMIC-HS, 442 clips,
68 subjects) as one 28 x 28 RGB PNG per clip whose channels are the onset->apex flow's
(u, v, strain), each min-max scaled to 0..255, named ``<subject>_<clip> .png`` WITH a space
before ``.png`` (``sub01_EP02_01f .png``, ``006_006_1_2 .png``, ``s01_s01_ne_01 .png``), and
their labels as a CSV with the header ``dataset,sub,filename_o,label,apex,imagename,
sub_filename`` (label 0 negative, 1 positive, 2 surprise). ``read_flow_images`` reads that
CSV, or the composite's own ``combined_3class_gt.csv`` (no header), and matches every row
to its image in the folder: the result has ``flow_path`` set and no crops, LOSO groups
``dataset/subject`` as for the composite, and every row without an image and every image
without a row reported as a problem.
"""

from __future__ import annotations

import contextlib
import csv
import re
from pathlib import Path

import numpy as np

from apexmer.data.frames import IMAGE_SUFFIXES, decode_image
from apexmer.data.labels import class_names, label_map
from apexmer.data.megc import SUBJECT_RULES, composite_row, read_megc
from apexmer.data.sample import Problem, Sample, SampleSet
from apexmer.data.sheets import RowError
from apexmer.errors import DataError, FrameError

LABEL_COLUMNS = ("dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename")
NEEDED_COLUMNS = ("dataset", "sub", "filename_o", "label")
CODING_VERSION = "megc2019-composite"
FLOW_LABELS_FIX = (
    "pass the label CSV distributed with the flow images (header dataset,sub,filename_o,"
    "label,apex,imagename,sub_filename) or combined_3class_gt.csv"
)
# Spellings of the three corpora seen in label files, after lower-casing and dropping
# everything but letters and digits.
_DATASET_ALIASES = {
    "casme2": "casme2",
    "casmeii": "casme2",
    "samm": "samm",
    "smic": "smic",
    "smichs": "smic",
}


def flow_image_stem(subject: str, clip: str) -> str:
    """The distributed file's name without ``.png`` (and its space): ``sub01_EP02_01f``."""
    return f"{subject}_{clip}"


def read_flow_images(
    coding: str | Path, root: str | Path | None = None, classes: str = "3class"
) -> SampleSet:
    """Read the label CSV ``coding`` and match each row to its flow image in ``root``.

    A row's image is, in this order: the CSV's ``imagename`` where it names a file of the
    folder (a path relative to ``root``, or a name compared without surrounding spaces),
    else ``sub_filename``, else ``<subject>_<filename_o>`` as published, with or without the
    space before the suffix. Subjects are normalised as for the composite (``6`` -> ``006``,
    ``1`` -> ``sub01``, ``s1`` -> ``s01``).
    """
    coding = Path(coding)
    if root is None:
        raise DataError(
            "no flow folder given",
            file=coding,
            fix="pass --root with the folder of (u, v, strain) images",
        )
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            "flow folder (--root) not found",
            file=root,
            fix="pass the folder that holds the flow images (e.g. 'sub01_EP02_01f .png')",
        )
    if not coding.is_file():
        raise DataError("label CSV not found", file=coding, fix=FLOW_LABELS_FIX)
    rows = _read_rows(coding)
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "filename_o" in header:
        if len(rows) == 1:
            raise DataError(
                "the label CSV has a header but no rows", file=coding, fix=FLOW_LABELS_FIX
            )
        samples, problems = _labelled_rows(coding, rows, label_map("megc", classes))
    else:  # combined_3class_gt.csv: dataset,subject,clip,label without a header
        _check_separator(coding, rows)
        composite = read_megc(coding, root=None, classes=classes)
        samples = [s.with_(extra={**s.extra, "names": ()}) for s in composite]
        problems = list(composite.problems)
    if not samples:
        first = f" (first: {problems[0]})" if problems else ""
        raise DataError(
            f"no row of the label CSV is usable{first}", file=coding, fix=FLOW_LABELS_FIX
        )
    index, problems_index = _index_folder(root)
    problems.extend(problems_index)
    matched: list[Sample] = []
    used: set[Path] = set()
    for sample in samples:
        path = _find_image(sample, index)
        row = sample.extra.get("row")
        if path is None:
            stem = flow_image_stem(sample.subject, sample.clip)
            problems.append(
                Problem(
                    str(coding),
                    f"no flow image for this row in {root} (looked for '{stem} .png' and "
                    f"'{stem}.png'). Fix: add the image or delete the row",
                    row=row,
                    sample=sample.key,
                )
            )
            continue
        if path in used:
            problems.append(
                Problem(
                    str(coding),
                    f"{path.name!r} is already the image of another row. Fix: correct "
                    "imagename or delete the duplicate row",
                    row=row,
                    sample=sample.key,
                )
            )
            continue
        used.add(path)
        issue = flow_image_issue(path)
        if issue is not None:  # 0-byte, cut short, grayscale, 4-channel, 16-bit ...
            problems.append(
                Problem(str(path), f"{issue.message} Fix: {issue.fix}", row=row, sample=sample.key)
            )
            continue
        extra = {k: v for k, v in sample.extra.items() if k != "names"}
        matched.append(sample.with_(flow_path=path, extra=extra))
    # An image named by a row that was rejected (its label, its field count ...) has that
    # row's problem reported already: it is not also an image "no row names".
    named = {index[n] for n in _row_stems(rows, header) if n in index}
    for path in sorted(set(index.values()) - used - named):
        problems.append(
            Problem(
                str(root),
                f"{path.name!r}: no row of {coding.name} names this image. Fix: add its row "
                "to the label CSV or move the file out of the folder",
            )
        )
    mapping = label_map("megc", classes)
    return SampleSet(matched, class_names(mapping), CODING_VERSION, str(coding), problems)


def read_flow_image(path: str | Path) -> np.ndarray:
    """One (u, v, strain) flow image as stored: 8-bit ``(H, W, 3)``, channels in OpenCV's
    order (B, G, R = strain, v, u). A missing, empty, cut short or undecodable file, or one
    that is not 8-bit with three channels (grayscale, with alpha, 16-bit) raises FrameError:
    such a file cannot hold the three flow channels, and converting it would invent them."""
    image = decode_image(path)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint8 or channels != 3:
        mode = {1: "grayscale", 2: "grayscale with alpha", 4: "with an alpha channel"}.get(
            channels, f"{channels} channels"
        )
        raise FrameError(
            f"a flow image holds u, v, strain as 8-bit R, G, B; this one is {image.dtype} "
            f"{mode} ({channels} channel{'s' * (channels != 1)})",
            file=path,
            fix="use the (u, v, strain) image as distributed (8-bit RGB), or delete its row",
        )
    return image


def flow_image_issue(path: str | Path) -> FrameError | None:
    """Why the flow image at ``path`` cannot be used (see ``read_flow_image``), or None."""
    try:
        read_flow_image(path)
    except FrameError as exc:
        return exc
    return None


def _check_separator(coding: Path, rows: list[list[str]]) -> None:
    """A CSV written with ';' or tab separators reads as one field per row: say so."""
    if all(len(r) == 1 for r in rows):
        for sep, name in ((";", "';'"), ("\t", "tabs")):
            if sep in rows[0][0]:
                raise DataError(
                    f"the fields are separated by {name}, not commas",
                    file=coding,
                    fix="save the label CSV with comma separators",
                )


def _stem(name: str) -> str:
    """A file name as the folder index keys it: last path part, no image suffix, no
    surrounding spaces."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if base.lower().endswith(tuple(IMAGE_SUFFIXES)) else base
    return stem.strip()


def _row_stems(rows: list[list[str]], header: list[str]) -> set[str]:
    """Every image stem any row of the label CSV could name (accepted or not)."""
    stems: set[str] = set()
    labelled = "filename_o" in header
    for cells in rows[1:] if labelled else rows:
        cells = [c.strip() for c in cells]
        if labelled:
            record = dict(zip(header, cells, strict=False))
            dataset, sub, clip = (record.get(k, "") for k in ("dataset", "sub", "filename_o"))
            names = [record.get("imagename", ""), record.get("sub_filename", "")]
        else:
            dataset, sub, clip = ([*cells, "", "", ""])[:3]
            names = []
        names.append(flow_image_stem(sub, clip))
        dataset = _DATASET_ALIASES.get(re.sub(r"[^a-z0-9]", "", dataset.lower()), dataset)
        with contextlib.suppress(KeyError, RowError):  # as normalised for the composite
            names.append(flow_image_stem(SUBJECT_RULES[dataset](sub), clip))
        stems.update(_stem(n) for n in names if n)
    return stems


def _read_rows(coding: Path) -> list[list[str]]:
    try:
        with open(coding, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"not a text CSV file ({exc})", file=coding, fix=FLOW_LABELS_FIX) from None
    if not rows:
        raise DataError("the file has no rows", file=coding, fix=FLOW_LABELS_FIX)
    return rows


def _labelled_rows(
    coding: Path, rows: list[list[str]], mapping: dict[str, str]
) -> tuple[list[Sample], list[Problem]]:
    """Samples of the distributed label CSV (header row first)."""
    header = [c.strip().lower() for c in rows[0]]
    missing = [c for c in NEEDED_COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; found: {', '.join(header)}",
            file=coding,
            fix=FLOW_LABELS_FIX,
        )
    samples: list[Sample] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, cells in enumerate(rows[1:], start=2):  # the header is row 1
        record = dict(zip(header, (c.strip() for c in cells), strict=False))
        try:
            if len(cells) != len(header):
                raise RowError(
                    f"{len(cells)} fields, the header has {len(header)}. Fix: keep one value "
                    "per column"
                )
            dataset = _DATASET_ALIASES.get(
                re.sub(r"[^a-z0-9]", "", record["dataset"].lower()), record["dataset"]
            )
            label = record["label"]
            if re.fullmatch(r"\d+\.0+", label):  # written by a spreadsheet as 1.0
                label = label.split(".")[0]
            sample = composite_row(
                [dataset, record["sub"], record["filename_o"], label], mapping, None
            )
            if sample.key in seen:
                raise RowError(f"{sample.key} appears twice. Fix: delete the duplicate row")
        except RowError as exc:
            problems.append(Problem(str(coding), str(exc), row=number))
            continue
        seen.add(sample.key)
        apex = record.get("apex", "")
        names = tuple(
            n
            for n in (
                record.get("imagename", ""),
                record.get("sub_filename", ""),
                flow_image_stem(record["sub"], record["filename_o"]),
            )
            if n
        )
        extra = {"row": number, "names": names}
        if record.get("imagename"):
            extra["imagename"] = record["imagename"]
        samples.append(sample.with_(apex=int(apex) if apex.isdigit() else None, extra=extra))
    return samples, problems


def _index_folder(root: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Images directly in ``root`` by name without suffix and surrounding spaces; a name
    held by two files (``x .png`` and ``x.png``) is a problem and matches no row."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.stem.strip(), []).append(path)
    problems = [
        Problem(
            str(root),
            f"{' and '.join(repr(p.name) for p in paths)} are one clip's image twice. Fix: "
            "keep one of them",
        )
        for paths in found.values()
        if len(paths) > 1
    ]
    return {k: v[0] for k, v in found.items() if len(v) == 1}, problems


def _find_image(sample: Sample, index: dict[str, Path]) -> Path | None:
    """The image of one sample: the CSV's own names first, then the published pattern."""
    for name in (*sample.extra.get("names", ()), flow_image_stem(sample.subject, sample.clip)):
        if _stem(name) in index:
            return index[_stem(name)]
    return None
