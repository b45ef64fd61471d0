"""Preprocessing: 68 landmarks, apex spotting, face alignment and crop.

dlib is imported only when a dlib detector first runs.
"""

from apexmer.preprocess.align import (
    AlignConfig,
    align_face,
    face_mask,
    invert_affine,
    similarity_from_landmarks,
    transform_points,
)
from apexmer.preprocess.landmarks import (
    DETECTORS,
    FaceLandmarks,
    LandmarkDetector,
    get_detector,
    register_detector,
)
from apexmer.preprocess.rois import ROIS, roi_boxes
from apexmer.preprocess.spotting import (
    SpotConfig,
    SpotResult,
    intensity_curve,
    spot_apex,
    spot_clip,
)

__all__ = [
    "DETECTORS",
    "ROIS",
    "AlignConfig",
    "FaceLandmarks",
    "LandmarkDetector",
    "SpotConfig",
    "SpotResult",
    "align_face",
    "face_mask",
    "get_detector",
    "intensity_curve",
    "invert_affine",
    "register_detector",
    "roi_boxes",
    "similarity_from_landmarks",
    "spot_apex",
    "spot_clip",
    "transform_points",
]
