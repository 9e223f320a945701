"""`hsirestore models`: list registered model variants and their shipped weights."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from hsirestore.cli.app import app
from hsirestore.cli.common import command


@command(app, "models", help="""List the registered models, their task and shipped weights.

\b
Examples:
  hsirestore models
  hsirestore models --task cassi --json
""")
def models_cmd(
    task: str = typer.Option(None, help="Only this task: restore, rgb2hsi or cassi."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    from hsirestore.registry import list_models
    from hsirestore.weights import read_manifest

    files = read_manifest().get("files", {})
    rows = []
    for spec in list_models(task):
        entry = files.get(spec.weights or "", None)
        rows.append({
            "name": spec.name,
            "task": spec.task,
            "bands": spec.bands,
            "weights": spec.weights if entry else None,
            "val_metrics": (entry or {}).get("val_metrics"),
            "description": spec.description,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="hsirestore models")
    for col in ("name", "task", "bands", "shipped weights", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["task"], str(r["bands"] or "any"), r["weights"] or "-",
                      r["description"])
    Console().print(table)
