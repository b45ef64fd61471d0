"""Long-video corpus registry (name -> reader) and ``read_long_videos`` dispatch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from apexmer.data.casme2_lv import read_casme2_lv
from apexmer.data.long_videos import LongVideoSet
from apexmer.data.samm_lv import read_samm_lv
from apexmer.errors import DataError

LONG_CORPORA: dict[str, Callable[..., LongVideoSet]] = {
    "casme2-lv": read_casme2_lv,
    "samm-lv": read_samm_lv,
}
_CODING_HINT = {
    "casme2-lv": "pass --coding 'CAS(ME)^2code_final.xlsx'",
    "samm-lv": "pass --coding with the SAMM Long Videos sheet (FACS_Movement_Only)",
}


def read_long_videos(
    corpus: str, coding: str | Path | None, root: str | Path | None = None
) -> LongVideoSet:
    """Read a long-video corpus by name (``casme2-lv`` or ``samm-lv``)."""
    name = corpus.lower()
    if name not in LONG_CORPORA:
        raise DataError(
            f"unknown long-video corpus {corpus!r}", fix=f"use one of {', '.join(LONG_CORPORA)}"
        )
    if coding is None:
        raise DataError(f"no coding sheet given for corpus {name!r}", fix=_CODING_HINT[name])
    return LONG_CORPORA[name](coding, root=root)
