"""Spotting, in one home: where an expression peaks and where it starts and ends.

- ``apex``: the apex frame inside a known clip (the paper's ROI-intensity method, the
  authors' variant, and ROI motion); ``apex_eval`` scores it against coded apexes.
- ``intervals``: expressions in long videos (the MEGC spotting task): onset, apex, offset.
- ``motion``: the ROI motion signal both use.
The landmark and ROI geometry they need is in ``apexmer.face``.
"""

from apexmer.spotting.apex import (
    SpotConfig,
    SpotResult,
    default_spot_method,
    intensity_curve,
    spot_apex,
    spot_clip,
)
from apexmer.spotting.intervals import (
    IntervalConfig,
    IntervalSpotResult,
    SpottedInterval,
    spot_intervals,
)

__all__ = [
    "IntervalConfig",
    "IntervalSpotResult",
    "SpotConfig",
    "SpotResult",
    "SpottedInterval",
    "default_spot_method",
    "intensity_curve",
    "spot_apex",
    "spot_clip",
    "spot_intervals",
]
