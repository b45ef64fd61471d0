"""``apexmer train`` (all subjects -> one checkpoint), ``apexmer predict``, ``apexmer serve``."""

from __future__ import annotations

from pathlib import Path

import typer

from apexmer.cli.help import config_help
from apexmer.errors import ApexmerError


def _write_crops(results: list, folder: Path) -> list[Path]:
    """Aligned crops the network saw, as PNG, one per successful clip."""
    import cv2

    from apexmer.fileio import write_bytes

    written = []
    for index, r in enumerate(results):
        if not r.ok:
            continue
        stem = Path(r.input).stem or Path(r.input).name or f"clip{index}"
        path = folder / f"{index:03d}_{stem}_{r.frame}.png"
        ok, buf = cv2.imencode(".png", r.crop)
        if not ok:
            raise ApexmerError(f"{path}: PNG encoding failed")
        write_bytes(path, buf.tobytes())
        written.append(path)
    return written


def _predict_long(
    predictor, paths: list[Path], fps: float | None, output_path: Path | None, as_json: bool
) -> None:
    """``predict --long``: spot and classify each long video; one row per interval."""
    import pandas as pd

    from apexmer.fileio import write_text

    tables = []
    for path in paths:
        table = predictor.spot(path, fps)
        table.insert(0, "input", str(path))
        tables.append(table)
        if not as_json:
            typer.echo(f"{path}: {len(table)} intervals ({(table['type'] == 'micro').sum()} micro)")
            for row in table.itertuples():
                label = (
                    f"{row.pred_label} ({row.confidence:.2f})"
                    if isinstance(row.pred_label, str)
                    else (row.error or "not classified")
                )
                typer.echo(
                    f"  {row.type:5} {row.onset_s:7.2f}-{row.offset_s:.2f} s  frames "
                    f"{row.onset}-{row.apex}-{row.offset}  {label}"
                )
    table = pd.concat(tables, ignore_index=True)
    if output_path is not None:
        write_text(output_path, table.to_csv(index=False))
        if not as_json:
            typer.echo(f"intervals: {output_path}")
    if as_json:
        typer.echo(table.to_json(orient="records", indent=2))


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        data: Path = typer.Option(..., "--data", help="CACHE/manifest.csv from preprocess"),
        config: str = typer.Option("flow", "--config", help=config_help()),
        out: Path = typer.Option(..., "--out", help="model folder (model.safetensors, .json)"),
        set_: list[str] = typer.Option([], "--set", help="override, e.g. train.epochs=5"),
    ) -> None:
        """Train on ALL subjects and write one self-describing checkpoint for `predict`."""
        from apexmer.config import load_config
        from apexmer.training.deploy import train_deployable

        cfg = load_config(config, list(set_))

        def on_epoch(row: dict) -> None:
            typer.echo(
                f"epoch {row['epoch']}/{cfg.train.epochs}  loss {row['loss']:.4f}  "
                f"train acc {row['train_acc']:.3f}",
                err=True,
            )

        meta = train_deployable(data, cfg, out, on_epoch=on_epoch)
        counts = ", ".join(f"{k} {v}" for k, v in meta["training_data"]["class_counts"].items())
        typer.echo(
            f"trained {meta['architecture']} on {meta['training_data']['n_samples']} "
            f"samples ({counts})"
        )
        typer.echo(f"checkpoint: {meta['checkpoint']}")

    @app.command(context_settings={"allow_interspersed_args": True})
    def predict(
        checkpoint: Path = typer.Option(
            ..., "--checkpoint", help="model folder from `apexmer train`, or its model.safetensors"
        ),
        input_path: list[Path] = typer.Option(
            ...,
            "--input-path",
            help="video, frame folder, or folder of clips; several may follow one flag "
            "(also --input_path)",
        ),
        more: list[Path] = typer.Argument(
            None,
            metavar="PATH",
            show_default=False,
            help="more inputs (so --input-path a b works)",
        ),
        output_path: Path | None = typer.Option(
            None, "--output-path", help="CSV, one row per clip (also --output_path)"
        ),
        device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
        save_aligned: Path | None = typer.Option(
            None, "--save-aligned", help="folder for the aligned crops (PNG; also --save_aligned)"
        ),
        onset: int | None = typer.Option(None, "--onset", help="onset frame (default: first)"),
        offset: int | None = typer.Option(None, "--offset", help="offset frame (default: last)"),
        as_json: bool = typer.Option(False, "--json", help="print the rows as a JSON list"),
        long: bool = typer.Option(
            False,
            "--long",
            help="long videos: spot the expression intervals, classify each micro-expression",
        ),
        fps: float | None = typer.Option(
            None, "--fps", help="with --long: frame rate (default: the video's)"
        ),
    ) -> None:
        """Recognise the micro-expression of each clip (exit 1 if any input failed).

        With --long each input is one long video: one row per spotted interval."""
        from apexmer.errors import DataError
        from apexmer.fileio import write_text
        from apexmer.inference import Predictor, find_clips

        if long:
            paths = [*input_path, *(more or [])]
            predictor = Predictor.from_checkpoint(checkpoint, device=device)
            _predict_long(predictor, paths, fps, output_path, as_json)
            return

        clips: list[Path] = []
        for path in [*input_path, *(more or [])]:
            # A missing or empty path becomes an error row for that input, not an abort of
            # all: opening it again per clip records the reason.
            try:
                clips.extend(find_clips(path) if path.exists() else [path])
            except DataError:
                clips.append(path)
        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        results = predictor.predict_clips([str(c) for c in clips], onset, offset, on_error="record")
        table = predictor.to_frame(results)
        if output_path is not None:
            write_text(output_path, table.to_csv(index=False))
        if save_aligned is not None:
            _write_crops(results, save_aligned)
        if as_json:
            typer.echo(table.to_json(orient="records", indent=2))
        else:
            for r in results:
                if r.ok:
                    typer.echo(
                        f"{r.input}: {r.label} ({r.confidence:.2f})  apex {r.apex} "
                        f"[{r.onset}..{r.offset}]"
                    )
            if output_path is not None:
                typer.echo(f"predictions: {output_path}")
        failed = [r for r in results if not r.ok]
        for r in failed:
            typer.echo(f"failed: {r.error}", err=True)
        if failed:
            raise typer.Exit(1)

    @app.command()
    def serve(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="model folder or file"),
        host: str = typer.Option(
            "127.0.0.1",
            "--host",
            help="0.0.0.0 exposes it to the network: only behind a proxy you trust",
        ),
        port: int = typer.Option(8000, "--port"),
        device: str = typer.Option("cpu", "--device"),
        workers: int = typer.Option(2, "--workers", help="clips processed at once"),
        max_upload_mb: float = typer.Option(50.0, "--max-upload-mb"),
        max_frames: int = typer.Option(600, "--max-frames"),
        max_duration: float = typer.Option(30.0, "--max-duration", help="seconds of video"),
        long_max_upload_mb: float = typer.Option(
            1024.0, "--long-max-upload-mb", help="/api/spot: upload size"
        ),
        long_max_frames: int = typer.Option(18_000, "--long-max-frames", help="/api/spot"),
        long_max_duration: float = typer.Option(
            600.0, "--long-max-duration", help="/api/spot: seconds of video"
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            help="torch threads; default CPU cores / workers (more only oversubscribes)",
        ),
    ) -> None:
        """Web page and JSON API: upload a clip, see apex, crop, curve and probabilities."""
        try:
            import uvicorn
        except ModuleNotFoundError:
            raise ApexmerError(
                "serving needs the serve extra. Fix: pip install 'apexmer[serve]'"
            ) from None
        import os

        import torch

        from apexmer.inference import Predictor
        from apexmer.serving.app import LongVideoLimits, ServeLimits, create_app

        # Concurrent requests each run a forward pass; torch's default (all cores per pass)
        # makes them fight over the cores (20x slower measured on a busy 2-core machine).
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // max(1, workers)))

        limits = ServeLimits(
            max_upload_bytes=int(max_upload_mb * 2**20),
            max_frames=max_frames,
            max_duration_s=max_duration,
            workers=workers,
            long=LongVideoLimits(
                max_upload_bytes=int(long_max_upload_mb * 2**20),
                max_frames=long_max_frames,
                max_duration_s=long_max_duration,
            ),
        )
        predictor = Predictor.from_checkpoint(checkpoint, device=device)
        typer.echo(
            f"serving {predictor.metadata['architecture']} "
            f"({', '.join(predictor.classes)}) at http://{host}:{port}/",
            err=True,
        )
        uvicorn.run(create_app(predictor, limits), host=host, port=port, log_level="info")
