"""`hsirestore models`: list registered model variants and their shipped weights."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from hsirestore.cli.app import app
from hsirestore.cli.common import command


@command(app, "models", help="""List the registered models, their task, shipped weights and paper.

\b
Examples:
  hsirestore models
  hsirestore models --task cassi --json
""")
def models_cmd(
    task: str = typer.Option(None, help="Only this task: restore (denoise), rgb2hsi or cassi."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    from hsirestore.errors import OptionError
    from hsirestore.registry import list_models
    from hsirestore.weights import read_manifest

    if task is not None:
        tasks = sorted({s.task for s in list_models()})
        key = task.strip().lower()
        key = {"denoise": "restore"}.get(key, key)  # the command's name for the restore task
        if key not in tasks:
            raise OptionError(f"unknown task {task!r}; valid tasks: {', '.join(tasks)}")
        task = key
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
            "reference": spec.reference,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    refs = list(dict.fromkeys(r["reference"] for r in rows if r["reference"]))  # in order, once
    table = Table(title="hsirestore models")
    table.add_column("name", no_wrap=True)  # model names stay whole (they are typed)
    for col in ("task", "bands", "shipped weights", "description", "ref."):
        # file names and text are folded onto several lines, never cut short with "..."
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["task"], str(r["bands"] or "any"), r["weights"] or "-",
                      r["description"],
                      f"[{refs.index(r['reference']) + 1}]" if r["reference"] else "-")
    console = Console()
    console.print(table)
    for i, ref in enumerate(refs, 1):
        console.print(f"[{i}] {ref}", markup=False, highlight=False)
