"""``apexmer loso``, ``apexmer ablation`` and ``apexmer demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from tqdm import tqdm

from apexmer.cli.help import config_help
from apexmer.cli.options import COUNT, RESAMPLES, SEED, in_range, one_of
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
                desc=str(event.get("protocol", "loso")).upper(),
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
            member = f" member {event['member']}" if "member" in event else ""
            self.bar.set_postfix_str(
                f"{event['group']}{member} epoch {event['epoch']} "
                f"loss {event['loss']:.3f} acc {event['train_acc']:.2f}"
            )
        elif kind == "fold_done" and self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _scores(row: dict) -> str:
    """``accuracy 0.780 [0.72, 0.83]  UF1 0.713 [0.66, 0.76]  UAR ...``"""
    parts = []
    for key, title in (("accuracy", "accuracy"), ("uf1", "UF1"), ("uar", "UAR")):
        ci = row.get(f"{key}_ci")
        parts.append(f"{title} {row[key]:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
    return "  ".join(parts)


def _headline(summary: dict) -> str:
    tag = "ORACLE (not a valid estimate) " if summary.get("oracle") else ""
    protocol = summary.get("protocol_name", "loso")
    return (
        f"{tag}{_scores(summary)}  ({summary['n_samples']} samples, "
        f"{summary['n_folds']} fold{'s' if summary['n_folds'] != 1 else ''}, {protocol})"
    )


def _per_dataset_lines(summary: dict) -> list[str]:
    rows = (summary.get("per_corpus") or {}).get("datasets") or []
    if len(rows) < 2:
        return []
    width = max(len(r["dataset"]) for r in rows)
    return [
        f"{r['dataset']:<{width}}  {_scores(r)}  ({r['n']} samples, {r['n_subjects']} subjects)"
        for r in rows
    ]


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def register(app: typer.Typer) -> None:
    @app.command()
    def loso(
        data: Path = typer.Option(..., "--data", help="manifest.csv written by preprocess"),
        config: str = typer.Option("flow", "--config", help=config_help()),
        out: Path | None = typer.Option(
            None,
            "--out",
            help="run folder (resumes if it exists) [default: runs/<config>-<protocol>]",
        ),
        set_: list[str] = typer.Option([], "--set", help="override, e.g. train.epochs=5"),
        frame: str | None = typer.Option(
            None, "--frame", help="apex | mid | onset", callback=one_of(("apex", "mid", "onset"))
        ),
        executor: str = typer.Option("auto", "--executor", help=EXECUTOR_HELP),
        workers: int | None = typer.Option(
            None, "--workers", help="parallel folds", callback=COUNT
        ),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="join an existing Ray cluster"
        ),
        oracle: bool = typer.Option(
            False,
            "--oracle",
            help="choose the epoch on the held-out subject (labelled ORACLE; not a valid estimate)",
        ),
        protocol: str | None = typer.Option(
            None,
            "--protocol",
            help="loso (one fold per subject), lodo (leave one dataset out) or cross "
            "(--train-datasets -> --test-datasets) [default: the config's eval.protocol, loso]",
        ),
        datasets: str | None = typer.Option(
            None, "--datasets", help="loso / lodo over these corpora only, e.g. casme2"
        ),
        train_datasets: str | None = typer.Option(
            None, "--train-datasets", help="cross: train on these corpora, e.g. casme2"
        ),
        test_datasets: str | None = typer.Option(
            None, "--test-datasets", help="cross: test on these corpora, e.g. samm"
        ),
        both_ways: bool = typer.Option(
            False, "--both-ways", help="cross: also train on the test corpora, test on the others"
        ),
        bootstrap: int | None = typer.Option(
            None,
            "--bootstrap",
            help="subject resamples for the confidence intervals (0: none) [default: 2000]",
            callback=RESAMPLES,
        ),
        as_json: bool = typer.Option(False, "--json", help="print summary.json"),
    ) -> None:
        """Train and evaluate under a protocol (LOSO by default, LODO, cross-dataset),
        resumable at fold granularity; every headline figure with its 95 % interval."""
        from apexmer.evaluation.protocol import run_loso
        from apexmer.training.devices import check_device

        overrides = list(set_)
        if frame:
            overrides.append(f"data.frame={frame}")
        if oracle:
            overrides.append("eval.oracle=true")
        if protocol:
            overrides.append(f"eval.protocol={protocol}")
        for key, text in (
            ("datasets", datasets),
            ("train_datasets", train_datasets),
            ("test_datasets", test_datasets),
        ):
            if text is not None:
                overrides.append(f"eval.{key}={json.dumps(_names(text))}")
        if both_ways:
            overrides.append("eval.both_ways=true")
        if bootstrap is not None:
            overrides.append(f"eval.bootstrap={bootstrap}")
        cfg = load_config(config, overrides)
        # Ray runs folds on other machines: only the name is checked here.
        check_device(cfg.train.device, "--set train.device", here=executor != "ray")
        if out is None:
            out = Path("runs") / f"{Path(config).stem}-{cfg.eval.protocol}"
            typer.echo(f"run folder: {out}", err=True)
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
            for line in _per_dataset_lines(summary):
                typer.echo(line)
            typer.echo(f"report: {out / 'report.md'}")
            typer.echo(_headline(summary))

    @app.command()
    def ablation(
        data: Path = typer.Option(..., "--data", help="manifest.csv written by preprocess"),
        out: Path = typer.Option(..., "--out", help="folder for the six runs and the table"),
        config: str = typer.Option("paper", "--config", help=config_help(ABLATION_NOTE)),
        set_: list[str] = typer.Option([], "--set", help="override, e.g. train.epochs=5"),
        executor: str = typer.Option("auto", "--executor", help=EXECUTOR_HELP),
        workers: int | None = typer.Option(
            None, "--workers", help="parallel folds", callback=COUNT
        ),
        models: str = typer.Option(
            "resnet50,resnext50_32x4d,seresnext50_32x4d",
            "--models",
            help="comma-separated registered networks (the paper's three by default)",
        ),
    ) -> None:
        """The paper's Table 4: ResNet-50 / ResNeXt-50 / SE-ResNeXt-50 x apex / non-apex."""
        from apexmer.evaluation.ablation import run_ablation
        from apexmer.models.registry import model_info
        from apexmer.training.devices import check_device

        names = tuple(m.strip() for m in models.split(",") if m.strip())
        for name in names:
            model_info(name)  # an unknown name fails here, before any run starts
        cfg = load_config(config, list(set_))
        check_device(cfg.train.device, "--set train.device", here=executor != "ray")
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
        subjects: int = typer.Option(8, "--subjects", callback=in_range(2, hint="(LOSO)")),
        clips_per_subject: int = typer.Option(8, "--clips-per-subject", callback=COUNT),
        seed: int = typer.Option(0, "--seed", callback=SEED),
        workers: int = typer.Option(2, "--workers", help="preprocessing processes", callback=COUNT),
        set_: list[str] = typer.Option([], "--set", help="override the demo preset"),
    ) -> None:
        """Synthetic corpus -> preprocess -> LOSO (demo preset) -> report, end to end."""
        from apexmer.evaluation.demo import run_demo
        from apexmer.training.devices import check_device

        check_device(load_config("demo", list(set_)).train.device, "--set train.device")
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
