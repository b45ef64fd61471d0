"""Model files shipped inside installed packages (nothing is ever downloaded)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from apexmer.errors import ApexmerError


def dlib_model_path(filename: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """Path of a model file shipped by ``face-recognition-models``, found without importing
    the package (its ``__init__`` imports ``pkg_resources``, absent from current setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ApexmerError(
            "the dlib landmark model is missing (package face-recognition-models "
            "is not installed). Fix: pip install face-recognition-models"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise ApexmerError(
            f"{path}: dlib model file not found. Fix: reinstall it with "
            "pip install --force-reinstall face-recognition-models"
        )
    return path
