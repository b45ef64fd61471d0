"""Label maps as data: sheet emotion -> class name, per corpus. Unmapped emotions are dropped.

The order of each map's classes is the label-index order used by models and reports.
"""

from __future__ import annotations

from apexmer.errors import DataError

# CASME II "Estimated Emotion" values (lower case in the sheet).
CASME2_EMOTIONS = ("happiness", "disgust", "repression", "surprise", "others", "sadness", "fear")
# SAMM "Estimated Emotion" values, lower-cased here (capitalised in the sheet).
SAMM_EMOTIONS = (
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "other",
    "sadness",
    "surprise",
)
# CAS(ME)^3 Part A "emotion" values (lower case in the sheet; 3 rows spell "Others").
CASME3_EMOTIONS = ("anger", "disgust", "fear", "happy", "others", "sad", "surprise")
# SMIC-HS folder names: positive / negative / surprise.
SMIC_EMOTIONS = ("negative", "positive", "surprise")

# CAS(ME)^3's 4 classes (Li et al. 2022): negative = anger, disgust, fear, sad;
# positive = happy; surprise; others. The 3-class task drops others.
_CASME3_4 = {
    "anger": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sad": "negative",
    "happy": "positive",
    "surprise": "surprise",
    "others": "others",
}

LABEL_MAPS: dict[str, dict[str, dict[str, str]]] = {
    "casme2": {
        # The paper's task: sadness (4) and fear (2) dropped -> 249 samples on the 2019 sheet.
        "5class": {e: e for e in ("disgust", "happiness", "others", "repression", "surprise")},
        # MEGC 2019: negative/positive/surprise, "others" dropped.
        "3class": {
            "disgust": "negative",
            "repression": "negative",
            "sadness": "negative",
            "fear": "negative",
            "happiness": "positive",
            "surprise": "surprise",
        },
        "all": {e: e for e in sorted(CASME2_EMOTIONS)},
    },
    "samm": {
        # The 5 classes SAMM studies use (anger, contempt, happiness, surprise, other).
        "5class": {e: e for e in ("anger", "contempt", "happiness", "other", "surprise")},
        "3class": {
            "anger": "negative",
            "contempt": "negative",
            "disgust": "negative",
            "fear": "negative",
            "sadness": "negative",
            "happiness": "positive",
            "surprise": "surprise",
        },
        "all": {e: e for e in sorted(SAMM_EMOTIONS)},
    },
    "casme3": {
        "7class": {e: e for e in CASME3_EMOTIONS},
        "4class": _CASME3_4,
        "3class": {e: c for e, c in _CASME3_4.items() if c != "others"},
        "all": {e: e for e in CASME3_EMOTIONS},
    },
    "smic": {
        "3class": {e: e for e in SMIC_EMOTIONS},
        "all": {e: e for e in SMIC_EMOTIONS},
    },
    "megc": {
        # combined_3class_gt.csv already holds 0 negative, 1 positive, 2 surprise.
        "3class": {"0": "negative", "1": "positive", "2": "surprise"},
        "all": {"0": "negative", "1": "positive", "2": "surprise"},
    },
}


def label_map(corpus: str, classes: str) -> dict[str, str]:
    """The emotion -> class map for ``corpus`` and task ``classes`` (5class, 3class, all;
    CAS(ME)^3 also 7class and 4class)."""
    try:
        maps = LABEL_MAPS[corpus]
    except KeyError:
        raise DataError(
            f"unknown corpus {corpus!r}", fix=f"use one of {', '.join(sorted(LABEL_MAPS))}"
        ) from None
    if classes not in maps:
        raise DataError(
            f"corpus {corpus!r} has no {classes!r} label map",
            fix=f"use --classes {' or '.join(maps)}",
        )
    return maps[classes]


def class_names(mapping: dict[str, str]) -> tuple[str, ...]:
    """Class names of a map in a stable order (first appearance)."""
    return tuple(dict.fromkeys(mapping.values()))
