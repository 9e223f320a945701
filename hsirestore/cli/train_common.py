"""What the three ``train *-export`` commands (cassi-export, hsivar-export, mcga-export)
share: their options and their body (:func:`run_export`)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

EXPORT_OUTPUT = typer.Option(None, "-o", "--output", help="Weights file (default weights/<preset>).")
EXPORT_NOTE = typer.Option("", help="Free note stored in the manifest.")
EXPORT_FORCE = typer.Option(False, "--force", help="Overwrite an existing weights file and its "
                            "manifest entry (without -o: the shipped weights).")


def run_export(export_weights, checkpoint: Path, output: Path | None, note: str, force: bool,
               **kw) -> None:
    """Export ``checkpoint`` with a trainer's ``export_weights`` (``kw``: its other
    arguments) and print the manifest entry's model, steps, sha256 and validation metrics
    as one JSON line. A missing checkpoint is the training loader's error
    (:func:`hsirestore.training.common.load_checkpoint`: FormatError, exit 1)."""
    entry = export_weights(checkpoint, output, note=note, overwrite=force, **kw)
    typer.echo(json.dumps({k: entry.get(k) for k in ("model", "steps", "sha256", "val_metrics")}))
