"""``apexmer spot``, ``apexmer spot-eval`` and ``apexmer preprocess``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from tqdm import tqdm

from apexmer.cli.options import COUNT, FRAME_NUMBER, LAG, in_range, one_of
from apexmer.preprocess.flow import ALGORITHMS, GLOBAL_MOTION

CORPUS_HELP = "casme2 | samm | casme3 | smic | megc"


DENOMINATOR_HELP = "backward (the paper's eq. 5) | symmetric (no lag/2 phase shift)"
METHOD_HELP = (
    "paper (eq. 5-6) | motion (ROI optical flow against the onset, head removed) "
    "[default: motion; the paper's with --config paper]"
)
FLOW_STYLE_HELP = (
    "apexmer (aligned, masked crops) | ststnet (the face box, no mask: as the public "
    "STSTNet/HTNet flow images) [default: the --config preset's, apexmer]"
)
LANDMARKS = one_of(("onset", "per_frame"))
DENOMINATOR = one_of(("backward", "symmetric"))
METHOD = one_of(("paper", "motion"))


def _spot_config(
    offset_term: bool,
    landmarks: str,
    lag: int,
    denominator: str = "backward",
    method: str | None = None,
):
    from apexmer.spotting.apex import SpotConfig, default_spot_method

    method = method or default_spot_method()
    return SpotConfig(
        offset_term=offset_term,
        landmarks=landmarks,
        lag=lag,
        denominator=denominator,
        method=method,
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def spot(
        frames: Path = typer.Option(..., "--frames", help="frame folder or video file"),
        onset: int | None = typer.Option(
            None, "--onset", help="onset frame number", callback=FRAME_NUMBER
        ),
        offset: int | None = typer.Option(
            None, "--offset", help="offset frame number", callback=FRAME_NUMBER
        ),
        offset_term: bool = typer.Option(
            True, "--offset-term/--no-offset-term", help="paper (on) or the authors' code (off)"
        ),
        landmarks: str = typer.Option(
            "onset", "--landmarks", help="onset | per_frame", callback=LANDMARKS
        ),
        lag: int = typer.Option(3, "--lag", help="normalisation lag in frames", callback=LAG),
        denominator: str = typer.Option(
            "backward", "--denominator", help=DENOMINATOR_HELP, callback=DENOMINATOR
        ),
        method: str | None = typer.Option(None, "--spot-method", help=METHOD_HELP, callback=METHOD),
        detector: str = typer.Option("dlib", "--detector"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Spot the apex frame of one clip."""
        from apexmer.data.frames import open_frames
        from apexmer.face.landmarks import get_detector
        from apexmer.spotting.apex import spot_clip

        with open_frames(frames) as src:
            res = spot_clip(
                src,
                onset,
                offset,
                get_detector(detector),
                _spot_config(offset_term, landmarks, lag, denominator, method),
            )
        record = res.as_dict()  # skipped first frames score None (JSON null), never NaN
        payload = {k: record[k] for k in ("apex", "curve", "onset", "offset")}
        if as_json:
            typer.echo(json.dumps(payload))
        else:
            typer.echo(f"apex frame {res.apex} (onset {res.onset}, offset {res.offset})")

    @app.command("spot-eval")
    def spot_eval(
        corpus: str = typer.Option(
            ..., "--corpus", help=f"{CORPUS_HELP} | casme2-lv | samm-lv (long videos)"
        ),
        coding: Path | None = typer.Option(None, "--coding", help="coding sheet"),
        root: Path | None = typer.Option(
            None, "--root", help="folder of the frame folders (optional with --spotted)"
        ),
        spotted: Path | None = typer.Option(
            None,
            "--spotted",
            help="long videos: score intervals from this CSV (video,onset,offset,type) "
            "instead of running the spotter",
        ),
        iou: float = typer.Option(
            0.5,
            "--iou",
            help="long videos: IoU for a true positive",
            callback=in_range(0, 1, low_open=True, hint="(MEGC: 0.5)"),
        ),
        loso_tune: bool = typer.Option(
            False,
            "--loso-tune",
            help="long videos: choose the spotter's threshold (mad_k) leave-one-subject-out",
        ),
        classes: str = typer.Option("all", "--classes"),
        offset_term: bool = typer.Option(True, "--offset-term/--no-offset-term"),
        landmarks: str = typer.Option(
            "onset", "--landmarks", help="onset | per_frame", callback=LANDMARKS
        ),
        lag: int = typer.Option(3, "--lag", callback=LAG),
        denominator: str = typer.Option(
            "backward", "--denominator", help=DENOMINATOR_HELP, callback=DENOMINATOR
        ),
        method: str | None = typer.Option(None, "--spot-method", help=METHOD_HELP, callback=METHOD),
        workers: int = typer.Option(1, "--workers", callback=COUNT),
        out: Path | None = typer.Option(
            None, "--out", help="folder for spotting_errors.csv and spotting_errors.png"
        ),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Spotting error against the labelled apex over a corpus; for a long-video corpus
        (casme2-lv, samm-lv) interval spotting scored the MEGC way (spot_report.md)."""
        from apexmer.data.long_corpora import LONG_CORPORA

        if corpus.lower() in LONG_CORPORA:
            _spot_eval_long(corpus, coding, root, spotted, iou, loso_tune, out, as_json)
            return
        if root is None or spotted is not None or loso_tune:
            from apexmer.errors import ConfigError

            raise ConfigError(
                f"--corpus {corpus} needs --root and takes no --spotted or --loso-tune "
                "(interval spotting is evaluated on casme2-lv and samm-lv)"
            )
        from apexmer.data.readers import read_corpus
        from apexmer.errors import DataError
        from apexmer.fileio import write_text
        from apexmer.spotting.apex_eval import (
            evaluate_spotting,
            plot_spotting_errors,
            spotting_scores,
        )

        samples = read_corpus(corpus, coding=coding, root=root, classes=classes)
        table = evaluate_spotting(
            samples,
            _spot_config(offset_term, landmarks, lag, denominator, method),
            workers=workers,
        )
        scores = spotting_scores(table["error"].to_list())
        for _, row in table[table["problem"] != ""].iterrows():
            typer.echo(f"skipped {row['key']}: {row['problem']}", err=True)
        if out is not None:
            write_text(out / "spotting_errors.csv", table.to_csv(index=False))
            plot_spotting_errors(table, out / "spotting_errors.png")
        if scores["n"] == 0:
            raise DataError(
                "no clip could be scored: none has both a labelled apex and a spotted one",
                file=coding or root,
                fix="spot-eval needs apex labels (CASME II, SAMM); SMIC and the MEGC list "
                "have none",
            )
        if as_json:
            typer.echo(json.dumps(scores))
        else:
            typer.echo(
                f"n {scores['n']}  MAE {scores['mae']:.2f}  median {scores['median']}"
                f"  within 1/5/10: {scores['within_1']:.2f} / {scores['within_5']:.2f}"
                f" / {scores['within_10']:.2f}"
            )

    @app.command()
    def preprocess(
        corpus: str = typer.Option(..., "--corpus", help=CORPUS_HELP),
        coding: Path | None = typer.Option(None, "--coding", help="coding sheet"),
        root: Path = typer.Option(..., "--root", help="folder of the frame folders"),
        out: Path = typer.Option(..., "--out", help="cache folder (resumes if it exists)"),
        classes: str | None = typer.Option(None, "--classes", help="5class | 3class | all"),
        config_name: str = typer.Option(
            "flow",
            "--config",
            help="the preset (or YAML) the cache is for: its spotter and flow style "
            "(paper: the paper's spotter; every other: motion)",
        ),
        apex: str = typer.Option(
            "labelled",
            "--apex",
            help="labelled | spotted",
            callback=one_of(("labelled", "spotted")),
        ),
        apex_outside: str = typer.Option(
            "spotted",
            "--apex-outside",
            help="a labelled apex outside onset..offset becomes: spotted (inside the span) | "
            "clamped (nearer of onset/offset) | labelled (as coded)",
            callback=one_of(("spotted", "clamped", "labelled")),
        ),
        workers: int = typer.Option(1, "--workers", help="processes", callback=COUNT),
        size: int = typer.Option(
            224, "--size", help="crop size in pixels", callback=in_range(16, hint="pixels")
        ),
        offset_term: bool = typer.Option(True, "--offset-term/--no-offset-term"),
        landmarks: str = typer.Option(
            "onset", "--landmarks", help="onset | per_frame", callback=LANDMARKS
        ),
        lag: int = typer.Option(3, "--lag", callback=LAG),
        denominator: str = typer.Option(
            "backward", "--denominator", help=DENOMINATOR_HELP, callback=DENOMINATOR
        ),
        method: str | None = typer.Option(None, "--spot-method", help=METHOD_HELP, callback=METHOD),
        align_per: str = typer.Option(
            "clip",
            "--align-per",
            help="clip: one transform per clip from the apex frame | frame: each frame its own",
            callback=one_of(("clip", "frame")),
        ),
        detector: str = typer.Option("dlib", "--detector"),
        flow: str = typer.Option(
            "tvl1",
            "--flow",
            help="onset->apex/mid optical flow: tvl1 (accurate) | dis | farneback (fast) | none",
            callback=one_of((*ALGORITHMS, "none")),
        ),
        flow_global: str = typer.Option(
            "nose_median",
            "--flow-global",
            help="head motion left in the flow: nose_median (subtract the nose bridge's "
            "median flow) | none",
            callback=one_of(GLOBAL_MOTION),
        ),
        flow_style: str | None = typer.Option(None, "--flow-style", help=FLOW_STYLE_HELP),
    ) -> None:
        """Spot, align and crop every sample, compute its optical flow; write manifest.csv
        and problems.csv."""
        from apexmer.config import load_config, spot_method_of
        from apexmer.data.readers import read_corpus
        from apexmer.errors import ConfigError, DataError
        from apexmer.face.align import AlignConfig
        from apexmer.preprocess.flow import FlowConfig
        from apexmer.preprocess.pipeline import PreprocessConfig, preprocess_corpus

        if corpus.strip().lower() == "megc-flow":  # flows already made: nothing to preprocess
            raise ConfigError(
                "--corpus megc-flow: flow images need `apexmer data manifest --corpus "
                "megc-flow`, not preprocess. Fix: apexmer data manifest --corpus megc-flow "
                "--coding LABELS.csv --root FLOW_FOLDER --out manifest.csv"
            )
        preset = load_config(config_name)
        method = method or spot_method_of(preset)
        style = flow_style or preset.preprocess.flow_style
        config = PreprocessConfig(
            detector=detector,
            apex=apex,
            apex_outside=apex_outside,
            spot=_spot_config(offset_term, landmarks, lag, denominator, method),
            align_per=align_per,
            align=AlignConfig(size=size),
            flow=None
            if flow == "none"
            else FlowConfig(flow, remove_global=flow_global, style=style),
        )
        typer.echo(
            f"spotter: {method}"
            + (f", flow style: {style}" if config.flow is not None else "")
            + " (recorded in preprocess.json)",
            err=True,
        )
        samples = read_corpus(corpus, coding=coding, root=root, classes=classes)
        bar = SampleProgress()
        try:
            result = preprocess_corpus(samples, out, config, workers=workers, progress=bar)
        finally:
            bar.close()
        typer.echo(f"{result.n_ok} samples preprocessed, {result.n_failed} problems")
        typer.echo(f"manifest: {result.manifest}")
        if result.n_failed:
            typer.echo(f"problems: {result.problems_csv}")
        if warned := sum(p.is_warning for p in result.problems):
            typer.echo(f"{warned} warnings (samples kept, flagged): {result.problems_csv}")
        if result.n_ok == 0:  # a job that produced nothing is not a success (exit 2)
            errors = [str(p) for p in result.problems if not p.is_warning]
            first, _, fix = (errors[0] if errors else "").partition(" Fix: ")
            raise DataError(
                "no sample was preprocessed; every problem is listed there"
                + (f". The first: {first.rstrip('.')}." if first else "."),
                file=result.problems_csv,
                fix=fix or "fix the first problem and run again (finished samples are kept)",
            )


def _spot_eval_long(
    corpus: str,
    coding: Path | None,
    root: Path | None,
    spotted: Path | None,
    iou: float,
    loso_tune: bool,
    out: Path | None,
    as_json: bool,
) -> None:
    """Interval spotting on a long-video corpus, scored the MEGC way; report under --out."""
    from apexmer import __version__
    from apexmer.data.long_corpora import read_long_videos
    from apexmer.errors import ConfigError
    from apexmer.evaluation.long_video_eval import (
        evaluate_long_videos,
        read_spotted_csv,
        spot_videos,
        tune_loso,
    )
    from apexmer.evaluation.spot_report import REPORT_NAME, write_spot_report

    if out is None:
        raise ConfigError("spot-eval on long videos writes a report: pass --out FOLDER")
    if not 0 < iou <= 1:
        raise ConfigError(f"--iou {iou}: use a fraction in (0, 1] (MEGC: 0.5)")
    videos = read_long_videos(corpus, coding, root=root)
    if spotted is not None:
        if loso_tune:
            raise ConfigError("--loso-tune moves apexmer's spotter threshold; not with --spotted")
        spottings = read_spotted_csv(spotted, videos)
        meta = {"spotter": f"intervals read from {spotted}", "tuning": "not known to apexmer"}
    else:
        if root is None:
            raise ConfigError("pass --root (the frames) to run the spotter, or --spotted CSV")
        from apexmer.face.landmarks import get_detector
        from apexmer.spotting.intervals import IntervalConfig

        config = IntervalConfig()
        with tqdm(total=len(videos), unit="video", desc="spot", dynamic_ncols=True) as bar:

            def progress(done: int, total: int, key: str) -> None:
                bar.update(done - bar.n)
                bar.set_postfix_str(key)

            spottings = spot_videos(
                videos, get_detector("dlib"), config, cache=out / "spotted", progress=progress
            )
        meta = {
            "spotter": "apexmer spot_intervals with IntervalConfig defaults "
            f"({json.dumps(config.to_dict(), default=str)})",
            "tuning": "none in this run: IntervalConfig defaults; the threshold is relative "
            "to each video's own noise (nothing is fitted to a video's or subject's labels)",
        }
        if loso_tune:
            spottings, tuning = tune_loso(videos, spottings, config, iou_threshold=iou)
            meta["tuning"] = tuning.describe()
            meta["loso_chosen"] = tuning.chosen
    result = evaluate_long_videos(videos, spottings, threshold=iou)
    meta = {"corpus": corpus, "version": __version__, **meta}
    write_spot_report(out, result, videos, meta)
    for line in result.skipped:
        typer.echo(f"skipped {line}", err=True)
    pooled = {k: c.as_dict() for k, c in result.scores.pooled.items()}
    if as_json:
        typer.echo(json.dumps({"iou_threshold": iou, "pooled": pooled}))
        return
    for kind, c in pooled.items():
        scores = "  ".join(
            f"{name} {'-' if c[name] is None else format(c[name], '.3f')}"
            for name in ("precision", "recall", "f1")
        )
        typer.echo(f"{kind:<8} TP {c['tp']}  FP {c['fp']}  FN {c['fn']}  {scores}")
    typer.echo(f"report: {out / REPORT_NAME}")


class SampleProgress:
    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, event: dict) -> None:
        if event["event"] == "start":
            self.bar = tqdm(
                total=event["total"],
                initial=event["done"],
                unit="clip",
                desc="preprocess",
                dynamic_ncols=True,
            )
        elif event["event"] == "sample" and self.bar is not None:
            self.bar.update(1)
            if event["status"] != "ok":
                self.bar.set_postfix_str(f"failed: {event['key']}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
