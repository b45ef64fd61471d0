"""Inference: a Predictor that takes a checkpoint and returns one DataFrame row per clip."""

from apexmer.inference.predictor import ClipPrediction, Predictor, crop_to_input, find_clips

__all__ = ["ClipPrediction", "Predictor", "crop_to_input", "find_clips"]
