"""``apexmer synth``: write the synthetic CASME II-style corpus."""

from __future__ import annotations

from pathlib import Path

import typer

from apexmer.errors import ConfigError


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
        subjects: int = typer.Option(8, "--subjects", help="number of subjects"),
        clips_per_subject: int = typer.Option(8, "--clips-per-subject", help="clips each"),
        seed: int = typer.Option(0, "--seed", help="same seed, byte-identical files"),
        size: str = typer.Option("640x480", "--size", help="frame size WIDTHxHEIGHT"),
        jitter: float | None = typer.Option(
            None, "--jitter", help="largest global drift in px (default 0.05 at 640 px)"
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="replace frames left by an earlier run"
        ),
    ) -> None:
        """Write a synthetic corpus in the CASME II layout (coding sheet, frames, ground truth)."""
        from apexmer.data.synth import write_synthetic_corpus

        info = write_synthetic_corpus(
            out,
            subjects=subjects,
            clips_per_subject=clips_per_subject,
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
