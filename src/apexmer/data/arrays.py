"""Checks of numeric arrays where they enter apexmer: one description of a non-finite value
for every loader (flow files, checkpoints) and the training loop."""

from __future__ import annotations

import numpy as np


def non_finite(array: np.ndarray) -> str | None:
    """Where float ``array`` holds NaN or +-inf, in words (``"2 non-finite values (inf,
    nan), the first at index (4, 7, 0)"``), or None when every value is finite or the
    array is not float."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        return None
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    values = array[bad]
    kinds = [
        name
        for name, hit in (
            ("nan", np.isnan(values).any()),
            ("inf", (values == np.inf).any()),
            ("-inf", (values == -np.inf).any()),
        )
        if hit
    ]
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = str(first[0]) if len(first) == 1 else str(first)
    n = int(bad.sum())
    return f"{n} non-finite value{'s' * (n != 1)} ({', '.join(kinds)}), the first at index {where}"
