"""Recognise what the interval spotter finds in a long video: spot, then classify.

``recognise_intervals(predictor, video)`` spots the expression intervals
(``spotting.spot_intervals``), then classifies each micro-expression with the trained
checkpoint exactly as a cut clip is classified: the predictor's ``predict_clips`` on the
interval's onset..offset (``preprocess.pipeline.process_clip``: apex spotted inside the
interval with the checkpoint's settings, aligned crops, the network). One row per interval
(``LongVideoResult.table``): frames, seconds, type, spotting score, class, probabilities.

The predictor is any object with ``classes``, ``detector()`` and ``predict_clips`` (the
``Predictor``; it calls this module from ``Predictor.spot``, so this module does not
import it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from apexmer.data.frames import FrameSource
from apexmer.face.landmarks import LandmarkDetector
from apexmer.spotting.intervals import IntervalConfig, IntervalSpotResult, spot_intervals

CLASSIFIED_KINDS = ("micro",)  # the checkpoint was trained on micro-expressions


class ClipClassifier(Protocol):
    classes: tuple[str, ...]

    def detector(self) -> LandmarkDetector: ...

    def predict_clips(
        self, source: Any, onset: int | None, offset: int | None, on_error: str | None
    ) -> list[Any]: ...


@dataclass(eq=False)
class LongVideoResult:
    """Spotted intervals and, per interval, the classifier's ``ClipPrediction`` (None for
    an interval of a kind that is not classified)."""

    spot: IntervalSpotResult
    predictions: list[Any | None]  # ClipPrediction per interval, or None
    classes: tuple[str, ...]

    def table(self) -> pd.DataFrame:
        """One row per interval: ``interval``, ``type``, frames and seconds of onset, apex
        and offset, ``duration_s``, ``score``, ``pred_label``, ``confidence``,
        ``prob_<class>``, ``apex_classified`` (the apex the classifier spotted inside the
        interval) and ``error``."""
        spots = self.spot.table()
        rows = []
        for index, (spot, pred) in enumerate(
            zip(spots.to_dict(orient="records"), self.predictions, strict=True)
        ):
            ok = pred is not None and pred.ok
            probs = pred.probs if ok else [np.nan] * len(self.classes)
            rows.append(
                {
                    "interval": index,
                    **spot,
                    "pred_label": pred.label if ok else None,
                    "confidence": pred.confidence if ok else np.nan,
                    **{f"prob_{c}": float(p) for c, p in zip(self.classes, probs, strict=True)},
                    "apex_classified": pred.apex if ok else None,
                    "error": None if pred is None else pred.error,
                }
            )
        columns = [
            "interval",
            *spots.columns,
            "pred_label",
            "confidence",
            *(f"prob_{c}" for c in self.classes),
            "apex_classified",
            "error",
        ]
        table = pd.DataFrame(rows, columns=columns)
        table["apex_classified"] = table["apex_classified"].astype("Int64")
        return table


def recognise_intervals(
    predictor: ClipClassifier,
    source: FrameSource,
    fps: float | None = None,
    config: IntervalConfig | None = None,
    kinds: Sequence[str] = CLASSIFIED_KINDS,
) -> LongVideoResult:
    """Spot the intervals of ``source`` and classify those of ``kinds`` (module doc).

    A failure inside one interval (no face on its frames, too short for the checkpoint's
    spotter) becomes that row's ``error``; the others are classified all the same.
    """
    spot = spot_intervals(source, fps, predictor.detector(), config)
    predictions: list[Any | None] = []
    for interval in spot.intervals:
        if interval.kind not in kinds:
            predictions.append(None)
            continue
        pred = predictor.predict_clips(source, interval.onset, interval.offset, on_error="record")[
            0
        ]
        pred.apex_frame = None  # a full frame per interval is not needed: keep memory flat
        predictions.append(pred)
    return LongVideoResult(spot=spot, predictions=predictions, classes=tuple(predictor.classes))
