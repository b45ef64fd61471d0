"""The long-video spotting report: ``spot_report.md``, ``spot_eval.json``,
``spotted_intervals.csv`` and one timeline PNG per video (coded vs spotted intervals over
the video's spotting score)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from apexmer.data.long_videos import LongVideo, LongVideoSet
from apexmer.evaluation.figures import new_figure, save_figure
from apexmer.evaluation.intervals import KINDS, SCORE_KEYS, VideoScore
from apexmer.evaluation.long_video_eval import LongEvalResult, VideoSpotting
from apexmer.evaluation.report import fmt, md_table
from apexmer.fileio import write_json, write_text

REPORT_NAME = "spot_report.md"
JSON_NAME = "spot_eval.json"
CSV_NAME = "spotted_intervals.csv"
TIMELINE_DIR = "timelines"
COLORS = {"micro": "#d62728", "macro": "#1f77b4"}


def plot_timeline(
    video: LongVideo, spotting: VideoSpotting, score: VideoScore, coded, path: Path
) -> Path:
    """Score curve (with the spotter's threshold) above two lanes: coded intervals and
    spotted ones, red micro, blue macro; a spotted interval that matched is solid, a false
    positive hatched; a coded interval that was missed is hatched."""
    fig = new_figure(12.0, 3.6)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1.3), hspace=0.08)
    top = fig.add_subplot(grid[0])
    lanes = fig.add_subplot(grid[1], sharex=top)
    if spotting.curve is not None and len(spotting.numbers):
        top.plot(spotting.numbers, spotting.curve, color="black", lw=0.8, label="spotting score")
        if spotting.threshold is not None and np.isfinite(spotting.threshold):
            top.axhline(spotting.threshold, color="gray", ls="--", lw=0.8, label="threshold")
        top.legend(loc="upper right", fontsize=7)
    else:
        top.text(
            0.5,
            0.5,
            spotting.problem or "no score curve",
            transform=top.transAxes,
            ha="center",
            va="center",
            fontsize=9,
        )
    top.set_ylabel("score")
    top.tick_params(labelbottom=False)
    counts = score.counts
    top.set_title(
        f"{video.key} ({video.name or video.video}, {video.fps:g} fps): "
        + ", ".join(f"{k} F1 {fmt(counts[k].f1)}" for k in SCORE_KEYS),
        fontsize=9,
    )
    matched_coded = {k: {m.coded for m in score.matches[k]} for k in KINDS}
    matched_spotted = {k: {m.spotted for m in score.matches[k]} for k in KINDS}
    index = dict.fromkeys(KINDS, 0)
    for _, span in coded:
        hit = index[span.kind] in matched_coded[span.kind]
        index[span.kind] += 1
        _bar(lanes, span.onset, span.offset, 1, span.kind, hit)
    index = dict.fromkeys(KINDS, 0)
    for interval in spotting.intervals:
        hit = index[interval.kind] in matched_spotted[interval.kind]
        index[interval.kind] += 1
        _bar(lanes, interval.onset, interval.offset, 0, interval.kind, hit)
    lanes.set_yticks([0.4, 1.4], labels=["spotted", "coded"])
    lanes.set_ylim(-0.2, 2.0)
    lanes.set_xlabel("frame")
    if video.n_frames:
        first = spotting.numbers[0] if spotting.numbers else 1
        lanes.set_xlim(first, first + video.n_frames - 1)
    return save_figure(fig, path)


def _bar(ax: Any, onset: int, offset: int, lane: int, kind: str, hit: bool) -> None:
    ax.broken_barh(
        [(onset, offset - onset + 1)],
        (lane + 0.05, 0.7),
        facecolors=COLORS[kind] if hit else "none",
        edgecolors=COLORS[kind],
        hatch=None if hit else "////",
        linewidth=0.8,
    )


def spotted_table(result: LongEvalResult) -> pd.DataFrame:
    """One row per spotted interval: video, frames, type, score, matched coded interval."""
    rows = []
    for score in result.scores.videos:
        spotting = result.spottings.get(score.key)
        if spotting is None:
            continue
        coded = result.coded.get(score.key, [])
        for kind in KINDS:
            of_kind = [i for i in spotting.intervals if i.kind == kind]
            coded_kind = [c for c, span in coded if span.kind == kind]
            by_spotted = {m.spotted: m for m in score.matches[kind]}
            for j, i in enumerate(of_kind):
                m = by_spotted.get(j)
                rows.append(
                    {
                        "video": score.key,
                        "onset": i.onset,
                        "apex": i.apex,
                        "offset": i.offset,
                        "type": i.kind,
                        "score": round(float(i.score), 4),
                        "match": coded_kind[m.coded].name if m else "",
                        "iou": round(m.iou, 4) if m else None,
                    }
                )
    columns = ["video", "onset", "apex", "offset", "type", "score", "match", "iou"]
    return pd.DataFrame(rows, columns=columns).sort_values(["video", "onset"], kind="stable")


def render_spot_report(
    result: LongEvalResult,
    video_set: LongVideoSet,
    meta: dict[str, Any],
    figures: dict[str, str],
) -> str:
    """The report's markdown (pure); ``figures`` maps a video key to its PNG, relative."""
    pooled = result.scores.pooled
    completed = sum(1 for v in video_set for i in v.intervals if i.offset is None)
    lines = [
        "# apexmer long-video spotting report",
        "",
        f"- **Corpus**: {meta.get('corpus', '')} ({video_set.coding_version}, "
        f"`{video_set.source}`), {len(video_set)} videos, "
        f"{len(video_set.subjects)} subjects",
        f"- **Spotted by**: {meta.get('spotter', '')}",
        f"- **Tuning**: {meta.get('tuning', 'none')}",
        f"- **Metric (MEGC)**: a spotted interval is a true positive when its IoU with a "
        f"coded interval of the same type is >= {result.scores.threshold:g} (frames counted "
        "inclusively); one-to-one maximum matching; TP, FP, FN summed over all videos, then "
        "scored; overall = micro + macro counts.",
        f"- **Coded intervals without an offset**: {completed}, scored as onset..apex + "
        "(apex - onset); left out (no apex either): "
        f"{len(result.unscored)}",
        f"- **Videos the spotter could not run on**: {len(result.skipped)} (their coded "
        "intervals count as false negatives)",
        f"- **apexmer**: {meta.get('version', '')}",
        "",
        "## Pooled over all videos",
        "",
    ]
    lines += md_table(
        ["type", "coded", "spotted", "TP", "FP", "FN", "precision", "recall", "F1"],
        [
            [
                k,
                c.tp + c.fn,
                c.tp + c.fp,
                c.tp,
                c.fp,
                c.fn,
                fmt(c.precision),
                fmt(c.recall),
                fmt(c.f1),
            ]
            for k, c in ((k, pooled[k]) for k in SCORE_KEYS)
        ],
    )
    lines += ["", "## Per video", ""]
    lines += md_table(
        [
            "video",
            "subject",
            "coded micro/macro",
            "spotted",
            "TP",
            "FP",
            "FN",
            "F1 micro",
            "F1 macro",
            "F1 overall",
        ],
        [
            [
                v.key,
                v.subject,
                f"{v.counts['micro'].tp + v.counts['micro'].fn}/"
                f"{v.counts['macro'].tp + v.counts['macro'].fn}",
                v.counts["overall"].tp + v.counts["overall"].fp,
                v.counts["overall"].tp,
                v.counts["overall"].fp,
                v.counts["overall"].fn,
                fmt(v.counts["micro"].f1),
                fmt(v.counts["macro"].f1),
                fmt(v.counts["overall"].f1),
            ]
            for v in result.scores.videos
        ],
    )
    lines += [
        "",
        "## Timelines",
        "",
        "Score curve over the frames; lanes below: coded and spotted intervals (red "
        "micro, blue macro; solid = matched, hatched = missed or false positive).",
        "",
    ]
    for key, rel in figures.items():
        lines += [f"![{key}]({rel})", ""]
    sections = [
        ("Videos not spotted", result.skipped),
        ("Coded intervals left out of the score", result.unscored),
        ("Data problems", [str(p) for p in video_set.problems]),
        ("Data warnings", [str(p) for p in video_set.warnings]),
    ]
    for title, items in sections:
        lines += [f"## {title} ({len(items)})", ""]
        lines += [f"- {x}" for x in items] or ["None."]
        lines.append("")
    return "\n".join(lines)


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def write_spot_report(
    out: Path, result: LongEvalResult, video_set: LongVideoSet, meta: dict[str, Any]
) -> Path:
    """Write the report, its JSON, the spotted-interval CSV and the timelines; return the
    report's path."""
    out = Path(out)
    figures: dict[str, str] = {}
    videos = {v.key: v for v in video_set}
    for score in result.scores.videos:
        spotting = result.spottings.get(score.key, VideoSpotting(score.key, problem="not spotted"))
        rel = f"{TIMELINE_DIR}/{_slug(score.key)}.png"
        plot_timeline(videos[score.key], spotting, score, result.coded[score.key], out / rel)
        figures[score.key] = rel
    write_text(out / CSV_NAME, spotted_table(result).to_csv(index=False))
    payload = {
        **meta,
        "coding_version": video_set.coding_version,
        "source": video_set.source,
        **result.scores.as_dict(),
        "skipped": result.skipped,
        "unscored": result.unscored,
        "problems": [str(p) for p in video_set.problems],
        "warnings": [str(p) for p in video_set.warnings],
    }
    write_json(out / JSON_NAME, payload)
    path = out / REPORT_NAME
    write_text(path, render_spot_report(result, video_set, meta, figures))
    return path
