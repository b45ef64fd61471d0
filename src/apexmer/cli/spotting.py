"""``apexmer spot-intervals``: the micro- and macro-expressions of a long video."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from apexmer.cli.options import frame_rate, one_of


def register(app: typer.Typer) -> None:
    @app.command("spot-intervals")
    def spot_intervals_cmd(
        frames: Path = typer.Option(..., "--frames", help="video file or frame folder"),
        fps: float | None = typer.Option(
            None,
            "--fps",
            help="frame rate (default: the video's; required for a folder)",
            callback=frame_rate,
        ),
        threshold: str = typer.Option(
            "mad",
            "--threshold",
            help="mad: median + k MAD | moilanen: mean + p (max - mean)",
            callback=one_of(("mad", "moilanen")),
        ),
        detector: str = typer.Option("dlib", "--detector"),
        as_json: bool = typer.Option(False, "--json", help="print intervals and curve as JSON"),
    ) -> None:
        """Spot expression intervals (onset, apex, offset; micro or macro) in a long video."""
        from apexmer.data.frames import open_frames
        from apexmer.face.landmarks import get_detector
        from apexmer.spotting import IntervalConfig, spot_intervals

        config = IntervalConfig(threshold=threshold)
        with open_frames(frames) as src:
            result = spot_intervals(src, fps, get_detector(detector), config)
        table = result.table()
        if as_json:
            payload = {
                "input": str(frames),
                "fps": result.fps,
                "frames": len(result.numbers),
                "lag": result.lag,
                "threshold": result.threshold,
                "intervals": table.to_dict(orient="records"),
                "numbers": result.numbers,
                "curve": [None if v != v else round(float(v), 5) for v in result.curve],
            }
            typer.echo(json.dumps(payload))
            return
        seconds = len(result.numbers) / result.fps
        typer.echo(
            f"{frames}: {len(result.numbers)} frames, {seconds:.1f} s at {result.fps:g} fps; "
            f"{len(table)} intervals ({(table['type'] == 'micro').sum()} micro)"
        )
        for row in table.itertuples():
            typer.echo(
                f"  {row.type:5}  frames {row.onset}-{row.apex}-{row.offset}  "
                f"{row.onset_s:.2f}-{row.offset_s:.2f} s  score {row.score:.3f}"
            )
