"""``apexmer train`` (all subjects -> one checkpoint), ``apexmer predict``, ``apexmer serve``."""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from apexmer.cli.help import config_help
from apexmer.cli.options import COUNT, FRAME_NUMBER, PORT, POSITIVE, frame_rate
from apexmer.errors import ApexmerError

SPOT_HELP = (
    "apex spotter: paper | motion [default: what the checkpoint records; motion unless "
    "trained with --config paper]"
)


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
) -> int:
    """``predict --long``: spot and classify each long video; one row per interval. An
    input that fails (no face, too short, unreadable) is one row with its ``error``, the
    others are processed all the same (as clip mode); returns how many failed."""
    import pandas as pd

    from apexmer.fileio import write_text
    from apexmer.inference.predictor import INPUT_ERRORS

    tables, failed = [], 0
    for path in paths:
        try:
            table = predictor.spot(path, fps)
        except INPUT_ERRORS as exc:
            failed += 1
            error = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            typer.echo(f"failed: {error}", err=True)
            tables.append(pd.DataFrame([{"input": str(path), "error": error}]))
            continue
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
    if "error" in table.columns:  # last, as in clip mode, whichever input came first
        table = table[[c for c in table.columns if c != "error"] + ["error"]]
    for column in ("interval", "onset", "apex", "offset"):  # frames stay integers
        if column in table.columns:
            table[column] = table[column].astype("Int64")
    if output_path is not None:
        write_text(output_path, table.to_csv(index=False))
        if not as_json:
            typer.echo(f"intervals: {output_path}")
    if as_json:
        typer.echo(table.to_json(orient="records", indent=2))
    return failed


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` and listening; ApexmerError naming both when
    the address is taken or not this machine's."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ApexmerError(
            f"--host {host}: {exc.strerror or exc}. Fix: use an address of this machine, "
            "e.g. 127.0.0.1"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ApexmerError(
            f"cannot serve at {host}:{port}: {exc.strerror or exc}. Fix: choose another "
            "--port, or stop what listens there"
        ) from None
    return sock


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        data: Path = typer.Option(..., "--data", help="CACHE/manifest.csv from preprocess"),
        config: str = typer.Option("flow", "--config", help=config_help()),
        out: Path = typer.Option(..., "--out", help="model folder (model.safetensors, .json)"),
        set_: list[str] = typer.Option([], "--set", help="override, e.g. train.epochs=5"),
        allow_missing_classes: bool = typer.Option(
            False,
            "--allow-missing-classes",
            help="train even when a class has no usable sample left (the model never predicts it)",
        ),
    ) -> None:
        """Train on ALL subjects and write one self-describing checkpoint for `predict`.
        Samples left out (unreadable or damaged files) are counted and listed in
        OUT/problems.txt."""
        from apexmer.config import load_config
        from apexmer.training.deploy import train_deployable
        from apexmer.training.devices import check_device

        cfg = load_config(config, list(set_))
        check_device(cfg.train.device, "--set train.device")

        def on_epoch(row: dict) -> None:
            member = f"member {row['member'] + 1}/{cfg.train.ensemble}  " if "member" in row else ""
            typer.echo(
                f"{member}epoch {row['epoch']}/{cfg.train.epochs}  loss {row['loss']:.4f}  "
                f"train acc {row['train_acc']:.3f}",
                err=True,
            )

        meta = train_deployable(
            data, cfg, out, on_epoch=on_epoch, allow_missing_classes=allow_missing_classes
        )
        info = meta["training_data"]
        counts = ", ".join(f"{k} {v}" for k, v in info["class_counts"].items())
        members = f"{meta['ensemble']} x " if meta["ensemble"] > 1 else ""
        tta = ", test-time flip" if meta["tta"] != "none" else ""
        typer.echo(
            f"trained {members}{meta['architecture']}{tta} on {info['n_samples']} samples "
            f"({counts})"
        )
        if meta["problems_file"]:
            typer.echo(
                f"warning: {len(info['problems'])} data problem(s), samples left out; "
                f"listed in {meta['problems_file']}",
                err=True,
            )
        if info["classes_without_samples"]:
            typer.echo(
                f"warning: no training sample for {', '.join(info['classes_without_samples'])}"
                " (--allow-missing-classes): the model never predicts it",
                err=True,
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
        onset: int | None = typer.Option(
            None, "--onset", help="onset frame (default: first)", callback=FRAME_NUMBER
        ),
        offset: int | None = typer.Option(
            None, "--offset", help="offset frame (default: last)", callback=FRAME_NUMBER
        ),
        as_json: bool = typer.Option(False, "--json", help="print the rows as a JSON list"),
        long: bool = typer.Option(
            False,
            "--long",
            help="long videos: spot the expression intervals, classify each micro-expression",
        ),
        fps: float | None = typer.Option(
            None,
            "--fps",
            help="with --long: frame rate (default: the video's)",
            callback=frame_rate,
        ),
        spot_method: str | None = typer.Option(None, "--spot-method", help=SPOT_HELP),
    ) -> None:
        """Recognise the micro-expression of each clip (exit 1 if any input failed).

        With --long each input is one long video: one row per spotted interval."""
        from apexmer.errors import DataError
        from apexmer.fileio import write_text
        from apexmer.inference import Predictor, find_clips

        if long:
            paths = [*input_path, *(more or [])]
            predictor = Predictor.from_checkpoint(
                checkpoint, device=device, spot_method=spot_method
            )
            if _predict_long(predictor, paths, fps, output_path, as_json):
                raise typer.Exit(1)
            return

        clips: list[Path] = []
        for path in [*input_path, *(more or [])]:
            # A missing or empty path becomes an error row for that input, not an abort of
            # all: opening it again per clip records the reason.
            try:
                clips.extend(find_clips(path) if path.exists() else [path])
            except DataError:
                clips.append(path)
        predictor = Predictor.from_checkpoint(checkpoint, device=device, spot_method=spot_method)
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
            style = f", flow style {predictor.flow_style}" if predictor.flow_style else ""
            typer.echo(f"apex spotter {predictor.spotter}{style}")
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
        port: int = typer.Option(8000, "--port", callback=PORT),
        device: str = typer.Option("cpu", "--device"),
        workers: int = typer.Option(2, "--workers", help="clips processed at once", callback=COUNT),
        max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", callback=POSITIVE),
        max_frames: int = typer.Option(600, "--max-frames", callback=COUNT),
        max_duration: float = typer.Option(
            30.0, "--max-duration", help="seconds of video", callback=POSITIVE
        ),
        long_max_upload_mb: float = typer.Option(
            1024.0, "--long-max-upload-mb", help="/api/spot: upload size", callback=POSITIVE
        ),
        long_max_frames: int = typer.Option(
            18_000, "--long-max-frames", help="/api/spot", callback=COUNT
        ),
        long_max_duration: float = typer.Option(
            600.0, "--long-max-duration", help="/api/spot: seconds of video", callback=POSITIVE
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            help="torch threads; default CPU cores / workers (more only oversubscribes)",
            callback=COUNT,
        ),
        spot_method: str | None = typer.Option(None, "--spot-method", help=SPOT_HELP),
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
        predictor = Predictor.from_checkpoint(checkpoint, device=device, spot_method=spot_method)
        style = f", flow style {predictor.flow_style}" if predictor.flow_style else ""
        sock = _listen(host, port)  # bound before saying where: a busy port fails first
        port = sock.getsockname()[1]  # --port 0: the one the system chose
        typer.echo(
            f"serving {predictor.metadata['architecture']} "
            f"({', '.join(predictor.classes)}; apex spotter {predictor.spotter}{style}) "
            f"at http://{host}:{port}/",
            err=True,
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(predictor, limits), host=host, port=port, log_level="info")
        )
        server.run(sockets=[sock])
