"""The face: 68 landmarks (a detector protocol with dlib behind it), alignment and crop,
and the regions of interest the spotters measure. Geometry only; no spotting, no corpus.

dlib is imported only when a dlib detector first runs.
"""

from apexmer.face.align import (
    AlignConfig,
    align_face,
    face_mask,
    invert_affine,
    similarity_from_landmarks,
    transform_points,
)
from apexmer.face.landmarks import (
    DETECTORS,
    FaceLandmarks,
    LandmarkDetector,
    get_detector,
    register_detector,
)
from apexmer.face.rois import ROIS, roi_boxes

__all__ = [
    "DETECTORS",
    "ROIS",
    "AlignConfig",
    "FaceLandmarks",
    "LandmarkDetector",
    "align_face",
    "face_mask",
    "get_detector",
    "invert_affine",
    "register_detector",
    "roi_boxes",
    "similarity_from_landmarks",
    "transform_points",
]
