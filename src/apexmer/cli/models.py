"""``apexmer models``: the registered networks and their parameter counts."""

from __future__ import annotations

import json

import typer

from apexmer.cli.options import COUNT


def models(
    as_json: bool = typer.Option(False, "--json", help="JSON list of {name, params, input}."),
    num_classes: int = typer.Option(
        5, "--num-classes", help="Classes of the head the counts include.", callback=COUNT
    ),
) -> None:
    """List the networks (timm names) with their parameter counts."""
    from apexmer.models.registry import describe_models, model_info

    rows = describe_models(num_classes=num_classes)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    typer.echo(f"{'name':<{width}}  {'params':>12}  {'input':>10}  description")
    for r in rows:
        description = model_info(r["name"]).description
        typer.echo(f"{r['name']:<{width}}  {r['params']:>12,}  {r['input']:>10}  {description}")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
