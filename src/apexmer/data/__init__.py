"""Corpora: Sample records, readers of the published formats, frames, the synthetic corpus."""

from apexmer.data.sample import Problem, Sample, SampleSet

__all__ = ["Problem", "Sample", "SampleSet"]
