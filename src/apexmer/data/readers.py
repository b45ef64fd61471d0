"""Corpus registry (name -> reader), ``read_corpus`` dispatch, and frame-folder checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from apexmer.data.casme2 import read_casme2
from apexmer.data.casme3 import read_casme3
from apexmer.data.checks import check_frames, frame_issue
from apexmer.data.flow_images import read_flow_images
from apexmer.data.manifest import read_manifest
from apexmer.data.megc import read_megc
from apexmer.data.samm import read_samm
from apexmer.data.sample import SampleSet
from apexmer.data.smic import read_smic
from apexmer.errors import DataError

CORPORA: dict[str, Callable[..., SampleSet]] = {
    "casme2": read_casme2,
    "samm": read_samm,
    "casme3": read_casme3,
    "smic": read_smic,
    "megc": read_megc,
    "manifest": read_manifest,
    "megc-flow": read_flow_images,  # flow images as STSTNet/HTNet distribute them
}
DEFAULT_CLASSES = {
    "casme2": "5class",
    "samm": "5class",
    "casme3": "7class",
    "smic": "3class",
    "megc": "3class",
    "megc-flow": "3class",
}
_CODING_HINT = {
    "casme2": "pass --coding CASME2-coding-20190701.xlsx (or the 2014 sheet)",
    "samm": "pass --coding SAMM_Micro_FACS_Codes_v2.xlsx",
    "casme3": "pass --coding cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
    "megc": "pass --coding combined_3class_gt.csv",
    "manifest": "pass --coding manifest.csv",
    "megc-flow": "pass --coding with the flow images' label CSV (or combined_3class_gt.csv)",
    "smic": "pass --root with SMIC-HS's folder (the one holding s1, s2, ...)",
}


__all__ = ["CORPORA", "check_frames", "frame_issue", "read_corpus"]


def read_corpus(
    corpus: str,
    coding: str | Path | None = None,
    root: str | Path | None = None,
    classes: str | None = None,
    layout: str | None = None,
) -> SampleSet:
    """Read a corpus by name (``casme2|samm|casme3|smic|megc|manifest``).

    ``classes`` defaults to 5class for casme2/samm, 7class for casme3 and 3class for
    smic/megc; a manifest carries its own labels and paths (``root``/``classes`` given with
    it are an error). For smic the folder is ``root``, or ``coding`` when no root is given.
    ``layout`` (casme3 only) is the frame folder template under ``root``.
    """
    name = corpus.lower()
    if name not in CORPORA:
        raise DataError(f"unknown corpus {corpus!r}", fix=f"use one of {', '.join(CORPORA)}")
    if name == "manifest":
        if root is not None or classes is not None:
            raise DataError(
                "a manifest carries its own crop paths and labels; --root and --classes do "
                "not apply to it",
                file=coding,
                fix="drop --root/--classes, or read the corpus the crops came from instead",
            )
        return read_manifest(_needed(coding, name))
    if layout is not None and name != "casme3":
        raise DataError(f"--layout applies to casme3 only, not {corpus!r}", fix="drop --layout")
    classes = classes or DEFAULT_CLASSES[name]
    if name == "casme3":
        return read_casme3(_needed(coding, name), root=root, classes=classes, layout=layout)
    if name == "smic":
        return read_smic(_needed(root if root is not None else coding, name), classes=classes)
    return CORPORA[name](_needed(coding, name), root=root, classes=classes)


def _needed(path: str | Path | None, corpus: str) -> Path:
    if path is None:
        raise DataError(f"no input file given for corpus {corpus!r}", fix=_CODING_HINT[corpus])
    return Path(path)
