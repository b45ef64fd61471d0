"""``apexmer synth``: write the synthetic CASME II-style corpus, or (``--long``) synthetic
long videos in the CAS(ME)^2 layout."""

from __future__ import annotations

from pathlib import Path

import typer

from apexmer.cli.options import COUNT, SEED, frame_rate, in_range
from apexmer.errors import ConfigError

EVENTS = in_range(0, 1000)  # expressions per video (more do not fit: a clear error later)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    return width, height


def register(app: typer.Typer) -> None:
    @app.command()
    def synth(
        out: Path = typer.Argument(..., help="folder to write the corpus into"),
        subjects: int | None = typer.Option(
            None, "--subjects", help="number of subjects (default 8; 2 with --long)", callback=COUNT
        ),
        clips_per_subject: int | None = typer.Option(
            None, "--clips-per-subject", help="clips each (default 8)", callback=COUNT
        ),
        seed: int = typer.Option(
            0, "--seed", help="same seed, byte-identical files", callback=SEED
        ),
        size: str = typer.Option("640x480", "--size", help="frame size WIDTHxHEIGHT"),
        jitter: float | None = typer.Option(
            None,
            "--jitter",
            help="largest global drift in px (default 0.05 at 640 px)",
            callback=in_range(0, 100, hint="px"),
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="replace frames left by an earlier run"
        ),
        long: bool = typer.Option(
            False, "--long", help="long videos with known intervals (CAS(ME)^2 layout)"
        ),
        videos_per_subject: int = typer.Option(
            2, "--videos-per-subject", help="--long: 1..9", callback=in_range(1, 9)
        ),
        seconds: float = typer.Option(
            30.0,
            "--seconds",
            help="--long: length of each video",
            callback=in_range(0, 3600, low_open=True, hint="seconds"),
        ),
        fps: float = typer.Option(30.0, "--fps", help="--long: frame rate", callback=frame_rate),
        micro: int = typer.Option(
            4, "--micro", help="--long: micro-expressions per video", callback=EVENTS
        ),
        macro: int = typer.Option(
            2, "--macro", help="--long: macro-expressions per video", callback=EVENTS
        ),
        blinks: float = typer.Option(
            12.0,
            "--blinks-per-minute",
            help="--long: eye blinks",
            callback=in_range(0, 120),
        ),
        head_px: float = typer.Option(
            4.0,
            "--head-px",
            help="--long: largest head translation, px at 640 px",
            callback=in_range(0, 100, hint="px"),
        ),
        head_deg: float = typer.Option(
            1.0, "--head-deg", help="--long: largest head rotation", callback=in_range(0, 30)
        ),
        mp4: bool = typer.Option(False, "--mp4", help="--long: also write each video as mp4"),
    ) -> None:
        """Write a synthetic corpus in the CASME II layout (coding sheet, frames, ground
        truth); with --long, long videos in the CAS(ME)^2 layout."""
        if long:
            if clips_per_subject is not None or jitter is not None:
                raise ConfigError("--clips-per-subject and --jitter do not apply to --long")
            _synth_long(
                out,
                subjects=2 if subjects is None else subjects,
                videos_per_subject=videos_per_subject,
                seed=seed,
                mp4=mp4,
                overwrite=overwrite,
                seconds=seconds,
                fps=fps,
                micro=micro,
                macro=macro,
                blinks_per_minute=blinks,
                head_px=head_px,
                head_deg=head_deg,
                size=_parse_size(size),
            )
            return
        from apexmer.data.synth import write_synthetic_corpus

        info = write_synthetic_corpus(
            out,
            subjects=8 if subjects is None else subjects,
            clips_per_subject=8 if clips_per_subject is None else clips_per_subject,
            seed=seed,
            size=_parse_size(size),
            jitter=jitter,
            overwrite=overwrite,
        )
        counts = info.ground_truth["emotion"].value_counts()
        typer.echo(f"coding sheet  {info.coding}")
        typer.echo(f"frames        {info.frames_root}")
        typer.echo(f"ground truth  {info.root / 'ground_truth.csv'}")
        typer.echo(
            f"{info.n_clips} clips, {info.ground_truth['subject'].nunique()} subjects, "
            f"{int(info.ground_truth['n_frames'].sum())} frames in {info.seconds:.1f} s; "
            + ", ".join(f"{e} {n}" for e, n in counts.items())
        )


def _synth_long(out: Path, **options) -> None:
    from tqdm import tqdm

    from apexmer.data.synth_long import LONG_TRUTH_NAME, write_long_corpus

    with tqdm(unit="video", desc="synth --long", dynamic_ncols=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        info = write_long_corpus(out, progress=progress, **options)
    kinds = info.ground_truth["kind"].value_counts()
    typer.echo(f"coding sheet  {info.coding}")
    typer.echo(f"frames        {info.frames_root}")
    if info.videos_root is not None:
        typer.echo(f"videos        {info.videos_root}")
    typer.echo(f"ground truth  {info.root / LONG_TRUTH_NAME}")
    typer.echo(
        f"{len(info.plans)} videos, {sum(p.n_frames for p in info.plans)} frames in "
        f"{info.seconds:.1f} s; "
        + ", ".join(f"{k} {kinds.get(k, 0)}" for k in ("micro", "macro", "blink"))
    )
