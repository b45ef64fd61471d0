"""``apexmer loso``, ``apexmer ablation`` and ``apexmer demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from tqdm import tqdm

from apexmer.cli.help import config_help
from apexmer.config import load_config

ABLATION_NOTE = (
    "The default is paper because the ablation IS the paper's experiment: 6 LOSO runs of "
    "ResNet-50-sized networks at 224 px, a GPU job (days on a CPU)"
)
EXECUTOR_HELP = (
    "auto (one fold group per core, one thread each: every core busy, the numbers of "
    "local) | local (one fold at a time) | process | ray"
)


class FoldProgress:
    """Progress over folds (and epochs inside a fold) on stderr."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "run":
            typer.echo(f"== {event['model']} / {event['frame']} frame -> {event['dir']}", err=True)
        elif kind == "start":
            self.close()
            self.bar = tqdm(
                total=event["n_folds"],
                initial=event["done"],
                unit="fold",
                desc="LOSO",
                dynamic_ncols=True,
            )
            if event["done"]:
                self.bar.write(
                    f"resuming: {event['done']} of {event['n_folds']} folds already done",
                    file=sys.stderr,
                )
        elif kind == "warning":
            tqdm.write(f"warning: {event['message']}", file=sys.stderr)
        elif kind == "epoch" and self.bar is not None:
            self.bar.set_postfix_str(
                f"{event['group']} epoch {event['epoch']} "
                f"loss {event['loss']:.3f} acc {event['train_acc']:.2f}"
            )
        elif kind == "fold_done" and self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _headline(summary: dict) -> str:
    tag = "ORACLE (not a valid estimate) " if summary.get("oracle") else ""
    return (
        f"{tag}accuracy {summary['accuracy']:.4f}  UF1 {summary['uf1']:.4f}  "
        f"UAR {summary['uar']:.4f}  ({summary['n_samples']} samples, "
        f"{summary['n_folds']} folds)"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def loso(
        data: Path = typer.Option(..., "--data", help="manifest.csv written by preprocess"),
        config: str = typer.Option("flow", "--config", help=config_help()),
        out: Path = typer.Option(..., "--out", help="run folder (resumes if it exists)"),
        set_: list[str] = typer.Option([], "--set", help="override, e.g. train.epochs=5"),
        frame: str | None = typer.Option(None, "--frame", help="apex | mid | onset"),
        executor: str = typer.Option("auto", "--executor", help=EXECUTOR_HELP),
        workers: int | None = typer.Option(None, "--workers", help="parallel folds"),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="join an existing Ray cluster"
        ),
        oracle: bool = typer.Option(
            False,
            "--oracle",
            help="choose the epoch on the held-out subject (labelled ORACLE; not a valid estimate)",
        ),
        as_json: bool = typer.Option(False, "--json", help="print summary.json"),
    ) -> None:
        """Leave-one-subject-out training and evaluation, resumable at fold granularity."""
        from apexmer.evaluation.protocol import run_loso

        overrides = list(set_)
        if frame:
            overrides.append(f"data.frame={frame}")
        if oracle:
            overrides.append("eval.oracle=true")
        cfg = load_config(config, overrides)
        progress = FoldProgress()
        try:
            summary = run_loso(
                data,
                cfg,
                out,
                executor=executor,
                workers=workers,
                ray_address=ray_address,
                progress=progress,
            )
        finally:
            progress.close()
        if summary["data_problems"]:
            typer.echo(
                f"warning: {len(summary['data_problems'])} data problem(s), samples left "
                f"out; listed in {out / 'report.md'}",
                err=True,
            )
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            typer.echo(_headline(summary))
            typer.echo(f"report: {out / 'report.md'}")

    @app.command()
    def ablation(
        data: Path = typer.Option(..., "--data", help="manifest.csv written by preprocess"),
        out: Path = typer.Option(..., "--out", help="folder for the six runs and the table"),
        config: str = typer.Option("paper", "--config", help=config_help(ABLATION_NOTE)),
        set_: list[str] = typer.Option([], "--set", help="override, e.g. train.epochs=5"),
        executor: str = typer.Option("auto", "--executor", help=EXECUTOR_HELP),
        workers: int | None = typer.Option(None, "--workers", help="parallel folds"),
        models: str = typer.Option(
            "resnet50,resnext50_32x4d,seresnext50_32x4d",
            "--models",
            help="comma-separated registered networks (the paper's three by default)",
        ),
    ) -> None:
        """The paper's Table 4: ResNet-50 / ResNeXt-50 / SE-ResNeXt-50 x apex / non-apex."""
        from apexmer.evaluation.ablation import run_ablation
        from apexmer.models.registry import model_info

        names = tuple(m.strip() for m in models.split(",") if m.strip())
        for name in names:
            model_info(name)  # an unknown name fails here, before any run starts
        cfg = load_config(config, list(set_))
        progress = FoldProgress()
        try:
            rows = run_ablation(
                data,
                cfg,
                out,
                models=names,
                executor=executor,
                workers=workers,
                progress=progress,
            )
        finally:
            progress.close()
        for row in rows:
            typer.echo(
                f"{row['model']:>20} {row['frame']:>5}  acc {row['accuracy']:.4f}  "
                f"UF1 {row['uf1']:.4f}"
            )
        typer.echo(f"table: {out / 'ablation.md'}")

    @app.command()
    def demo(
        out: Path = typer.Option(Path("demo"), "--out", help="folder for corpus, cache, run"),
        subjects: int = typer.Option(8, "--subjects"),
        clips_per_subject: int = typer.Option(8, "--clips-per-subject"),
        seed: int = typer.Option(0, "--seed"),
        workers: int = typer.Option(2, "--workers", help="preprocessing processes"),
        set_: list[str] = typer.Option([], "--set", help="override the demo preset"),
    ) -> None:
        """Synthetic corpus -> preprocess -> LOSO (demo preset) -> report, end to end."""
        from apexmer.evaluation.demo import run_demo

        progress = FoldProgress()
        try:
            result = run_demo(
                out,
                subjects=subjects,
                clips_per_subject=clips_per_subject,
                seed=seed,
                workers=workers,
                overrides=list(set_),
                progress=progress,
                log=lambda m: typer.echo(m, err=True),
            )
        finally:
            progress.close()
        typer.echo(_headline(result["summary"]))
        typer.echo(f"report: {result['report']}")
