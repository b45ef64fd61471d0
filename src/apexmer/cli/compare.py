"""``apexmer compare``: finished runs side by side, paired differences with intervals."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from apexmer.cli.options import CONFIDENCE, RESAMPLES, SEED


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        runs: list[Path] = typer.Argument(..., help="two or more run folders (apexmer loso --out)"),
        out: Path = typer.Option(
            Path("compare"), "--out", help="folder for compare.md, compare.png (and .json)"
        ),
        bootstrap: int = typer.Option(
            2000, "--bootstrap", help="subject resamples", callback=RESAMPLES
        ),
        seed: int = typer.Option(0, "--seed", help="bootstrap seed", callback=SEED),
        confidence: float = typer.Option(
            0.95, "--confidence", help="interval level", callback=CONFIDENCE
        ),
        as_json: bool = typer.Option(
            False, "--json", help="also write compare.json and print it instead of the table"
        ),
    ) -> None:
        """Compare runs on the same samples: each run's accuracy, UF1 and UAR with
        intervals, and for each pair the paired bootstrap interval of the difference."""
        from apexmer.evaluation.bootstrap import METRICS
        from apexmer.evaluation.compare import TITLES, compare_runs, render_compare
        from apexmer.evaluation.figures import plot_intervals
        from apexmer.fileio import write_json, write_text

        result = compare_runs(runs, n_resamples=bootstrap, seed=seed, confidence=confidence)
        out.mkdir(parents=True, exist_ok=True)
        text = render_compare(result)
        write_text(out / "compare.md", text)
        plot_intervals(result["runs"], METRICS, TITLES, out / "compare.png")
        if as_json:
            write_json(out / "compare.json", result)
            typer.echo(json.dumps(result, indent=2))
        else:
            typer.echo(text)
        typer.echo(f"written: {out / 'compare.md'}, {out / 'compare.png'}", err=True)
