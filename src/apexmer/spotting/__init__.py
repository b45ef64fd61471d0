"""Spotting expressions in long videos (the MEGC spotting task): where each one starts,
peaks and ends. The apex spotter inside a known clip is ``apexmer.preprocess.spotting``."""

from apexmer.spotting.intervals import (
    IntervalConfig,
    IntervalSpotResult,
    SpottedInterval,
    spot_intervals,
)

__all__ = ["IntervalConfig", "IntervalSpotResult", "SpottedInterval", "spot_intervals"]
