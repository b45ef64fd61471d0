"""Preprocessing a corpus: the resumable job that spots the apex, aligns and crops the
face and computes the optical flow of every sample, writing a manifest.

The stages it calls live in their own packages: ``apexmer.face`` (landmarks, alignment,
ROIs) and ``apexmer.spotting`` (apex spotting). Their names are re-exported here, and the
modules' old paths (``MOVED``) still import, so code written for earlier versions works.
"""

import importlib
import sys

from apexmer.face import (
    DETECTORS,
    ROIS,
    AlignConfig,
    FaceLandmarks,
    LandmarkDetector,
    align_face,
    face_mask,
    get_detector,
    invert_affine,
    register_detector,
    roi_boxes,
    similarity_from_landmarks,
    transform_points,
)
from apexmer.spotting.apex import (
    SpotConfig,
    SpotResult,
    intensity_curve,
    spot_apex,
    spot_clip,
)

# Old module path -> where it lives now (moved in 0.3 so that spotting has one home).
MOVED = {
    "apexmer.preprocess.landmarks": "apexmer.face.landmarks",
    "apexmer.preprocess.align": "apexmer.face.align",
    "apexmer.preprocess.rois": "apexmer.face.rois",
    "apexmer.preprocess.spotting": "apexmer.spotting.apex",
    "apexmer.preprocess.motion": "apexmer.spotting.motion",
    "apexmer.preprocess.spot_eval": "apexmer.spotting.apex_eval",
}
for _old, _new in MOVED.items():
    sys.modules.setdefault(_old, importlib.import_module(_new))
    setattr(sys.modules[__name__], _old.rsplit(".", 1)[1], sys.modules[_old])

__all__ = [
    "DETECTORS",
    "MOVED",
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
