"""`hsirestore evaluate`: compare a prediction with a reference cube."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import command


@command(app, "evaluate", help="""Compare PRED with REF and write a metric report.

Writes PREFIX.json (all metrics, per-band values, conventions), PREFIX.md (summary table)
and PREFIX_bands.csv (per band: wavelength, PSNR, SSIM, RMSE). PSNR and SSIM are per band
with peak --data-range and averaged (MPSNR, MSSIM); also global PSNR (NTIRE), SAM in
degrees, ERGAS (ratio 1), RMSE and MRAE. Pixels invalid in either cube are left out.

\b
Examples:
  hsirestore evaluate restored.h5 clean.h5 -o report
  hsirestore evaluate pred.tif ref.tif --data-range 4095 -o eval/scene1
""")
def evaluate(
    pred: Path = typer.Argument(..., help="Predicted cube."),
    ref: Path = typer.Argument(..., help="Reference cube."),
    output: Path = typer.Option(Path("report"), "-o", "--output", help="Report prefix."),
    data_range: float = typer.Option(1.0, help="Peak value for PSNR/SSIM."),
    var: str = typer.Option(None, help="Variable/dataset name in both files."),
    force: bool = typer.Option(False, help="Overwrite existing reports."),
) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from hsirestore.errors import ShapeError
    from hsirestore.io import read_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.metrics import compute_metrics, report_paths, write_report

    check_writable(report_paths(output), force)
    p, r = read_cube(pred, var=var), read_cube(ref, var=var)
    if p.shape != r.shape:
        raise ShapeError(f"prediction {'x'.join(map(str, p.shape))} and reference "
                         f"{'x'.join(map(str, r.shape))} differ in shape")
    valid = None
    if p.valid is not None or r.valid is not None:
        valid = np.ones(p.shape[1:], bool)
        for v in (p.valid, r.valid):
            if v is not None:
                valid &= v
    m = compute_metrics(p.data, r.data, valid=valid, data_range=data_range)
    write_report(m, output, force=force, wavelengths=r.wavelengths,
                 extra={"prediction": str(pred), "reference": str(ref)})
    t = Table(title=f"{pred.name} vs {ref.name}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("mpsnr", "psnr_global", "mssim", "sam_deg", "ergas", "rmse", "mrae"):
        t.add_row(k, f"{m[k]:.4f}")
    Console(stderr=True).print(t)
    typer.echo(json.dumps({k: round(m[k], 5) for k in ("mpsnr", "mssim", "sam_deg", "ergas", "rmse", "mrae")}))
