"""``apexmer data ...``: inspect a corpus as the readers see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from apexmer.data.long_corpora import LONG_CORPORA, read_long_videos
from apexmer.data.manifest import write_manifest
from apexmer.data.readers import CORPORA, read_corpus
from apexmer.errors import DataError

data_app = typer.Typer(
    help="Corpora: read coding sheets and frame folders, report problems.", no_args_is_help=True
)


@data_app.command("summary")
def summary(
    corpus: Annotated[str, typer.Option(help=f"One of: {', '.join([*CORPORA, *LONG_CORPORA])}.")],
    coding: Annotated[
        Path | None,
        typer.Option(help="Coding sheet, MEGC list or manifest (for smic: the folder)."),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(help="Folder with the frames; when given, frame folders are checked."),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help="5class, 3class or all (default: 5class for casme2/samm, 3class for "
            "smic/megc); casme3: 7class (default), 4class, 3class.",
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            help="casme3 only: frame folder under --root, e.g. '{subject}/{video}/color' "
            "(default: that, else '{subject}/{video}').",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Count samples, subjects and classes; list every problem (a row or sample left out)
    and every warning (kept, but flagged)."""
    if corpus.lower() in LONG_CORPORA:
        if classes is not None:
            raise DataError(
                f"{corpus} codes intervals (micro/macro), not classes; --classes does not apply",
                fix="drop --classes",
            )
        _long_summary(corpus, coding, root, as_json)
        return
    samples = read_corpus(corpus, coding=coding, root=root, classes=classes, layout=layout)
    if corpus.lower() == "manifest":  # the files training will read, checked as it checks them
        from apexmer.training.dataset import check_manifest_files

        samples = check_manifest_files(samples)
    info = samples.summary()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"coding version  {info['coding_version']}")
    typer.echo(f"samples         {info['samples']}")
    typer.echo(f"subjects        {info['subjects']}")
    for label, count in info["classes"].items():
        typer.echo(f"  {label:<14}{count}")
    # problems: rows/samples left out; warnings: kept but flagged (see docs/USAGE.md)
    typer.echo(f"problems        {len(info['problems'])}")
    for problem in info["problems"]:
        typer.echo(f"  {problem}")
    typer.echo(f"warnings        {len(info['warnings'])}")
    for warning in info["warnings"]:
        typer.echo(f"  {warning}")


@data_app.command("manifest")
def manifest(
    corpus: Annotated[str, typer.Option(help=f"One of: {', '.join(CORPORA)}.")],
    out: Annotated[Path, typer.Option(help="The manifest CSV to write.")],
    coding: Annotated[
        Path | None,
        typer.Option(help="Label CSV, coding sheet or MEGC list (for smic: the folder)."),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(help="Folder with the flow images (megc-flow) or the frames."),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(help="5class, 3class or all (default: the corpus's usual task)."),
    ] = None,
) -> None:
    """Write a manifest for `apexmer loso --data` from inputs you already have.

    For flow images as STSTNet/HTNet distribute them (one (u, v, strain) PNG per clip):
    `apexmer data manifest --corpus megc-flow --coding LABELS.csv --root FLOWS --out m.csv`.
    Rows without an image and images without a row are listed on stderr and left out.
    """
    samples = read_corpus(corpus, coding=coding, root=root, classes=classes)
    write_manifest(samples, out)
    for problem in samples.problems:
        typer.echo(f"problem: {problem}", err=True)
    counts = ", ".join(f"{k} {v}" for k, v in samples.class_counts().items())
    typer.echo(
        f"{len(samples)} samples, {len({s.group for s in samples})} subjects ({counts}), "
        f"{len(samples.problems)} problems -> {out}"
    )


@data_app.command("check-flow-style")
def check_flow_style_cmd(
    manifest: Annotated[
        Path, typer.Option(help="Manifest of flow images (`data manifest --corpus megc-flow`).")
    ],
    frames: Annotated[
        Path,
        typer.Option(
            help="Folder of the same clips' frames: <subject>/<clip>/, <dataset>/<subject>/"
            "<clip>/ or <clip>/ (a folder of images or a video)."
        ),
    ],
    style: Annotated[
        str, typer.Option(help="Flow style to compute: ststnet (the public images') | apexmer.")
    ] = "ststnet",
    flow: Annotated[str, typer.Option(help="Flow algorithm: tvl1 | dis | farneback.")] = "tvl1",
    detector: Annotated[str, typer.Option(help="Landmark backend.")] = "dlib",
    out: Annotated[Path | None, typer.Option(help="CSV with one row per clip.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows and means as JSON.")] = False,
) -> None:
    """Correlation per channel (u, v, strain) of apexmer's flow with the distributed flow
    image of the same clip, both at 28 px and min-max scaled; for clips you have both of.

    1.0 is the same image; the baseline column is each flow against the other clips' images
    (chance level)."""
    import pandas as pd

    from apexmer.data.manifest import read_manifest
    from apexmer.evaluation.flow_style import check_flow_style
    from apexmer.face.landmarks import get_detector
    from apexmer.fileio import write_text
    from apexmer.preprocess.flow import FlowConfig

    config = FlowConfig(flow, style=style)
    samples = read_manifest(manifest)
    result = check_flow_style(samples, frames, get_detector(detector), config)
    for line in result.skipped:
        typer.echo(f"skipped {line}", err=True)
    if not result.rows:
        raise DataError(
            "no clip has both a flow image and frames",
            file=frames,
            fix="put each clip's frames under FRAMES/<subject>/<clip>/ as in the manifest",
        )
    table = pd.DataFrame(result.rows)
    if out is not None:
        write_text(out, table.to_csv(index=False))
    means = result.means()
    if as_json:
        typer.echo(json.dumps({"style": style, "rows": result.rows, "mean": means}, indent=2))
        return
    typer.echo(f"flow style {style}, {len(table)} clips (Pearson r at 28 px, min-max scaled)")
    typer.echo(f"{'clip':<32}{'u':>7}{'v':>7}{'strain':>8}{'baseline':>10}")
    for row in result.rows:
        typer.echo(
            f"{row['key']:<32}{row['u']:>7.2f}{row['v']:>7.2f}{row['strain']:>8.2f}"
            f"{row['baseline']:>10.2f}"
        )
    typer.echo(
        f"{'mean':<32}{means['u']:>7.2f}{means['v']:>7.2f}{means['strain']:>8.2f}"
        f"{means['baseline']:>10.2f}"
    )


def _long_summary(corpus: str, coding: Path | None, root: Path | None, as_json: bool) -> None:
    """Long-video corpora: videos, expressions (micro/macro), subjects, problems, warnings."""
    info = read_long_videos(corpus, coding, root=root).summary()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{'coding version':<18}{info['coding_version']}")
    for key in ("videos", "expressions", "micro", "macro", "subjects", "offset_not_coded"):
        typer.echo(f"{key:<18}{info[key]}")
    for key in ("problems", "warnings"):
        typer.echo(f"{key:<18}{len(info[key])}")
        for line in info[key]:
            typer.echo(f"  {line}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")
