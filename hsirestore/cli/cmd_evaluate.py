"""`hsirestore evaluate`: compare a prediction with a reference cube."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import FORCE_HELP, check_layout, command

HELP = """Compare PRED with REF (same bands, rows and columns) and write a metric report.

Writes PREFIX.json (all metrics, per-band values with wavelengths, conventions, inputs),
PREFIX.md (summary table) and PREFIX_bands.csv (band, wavelength, PSNR, SSIM, RMSE); the
default PREFIX is PRED's name + '_report' in the current folder. Metrics: PSNR per band with
peak --data-range, averaged over bands (MPSNR; an exact band, +inf in the per-band list,
counts as 100 dB in the mean); global PSNR over the whole cube (NTIRE); SSIM per band
(Gaussian 11x11 window, sigma 1.5, as skimage gaussian_weights=True), averaged (MSSIM);
SAM in degrees; ERGAS (--ergas-ratio); RMSE; MRAE (NTIRE; references <= 1e-3 x
--data-range left out). Values are compared as read (file units): give --data-range as the peak of
that scale (1 for reflectance in [0, 1], 4095 for 12-bit counts...). Pixels invalid
(nodata / non-finite) in either cube are left out, and so are pixels where a single band
holds the nodata value (a missing value). The table goes to stderr, one JSON line
with the main figures to stdout.

\b
Examples:
  hsirestore evaluate restored.h5 clean.h5 -o report
  hsirestore evaluate pred.tif ref.tif --data-range 4095 -o eval/scene1
  hsirestore evaluate pred.mat gt.mat --var cube --force
  hsirestore evaluate out/scenes_scene1_restored.h5 scenes.h5:/scene1
"""


def _fmt(v: float) -> str:
    from hsirestore.metrics.report import format_value

    return format_value(v)


@command(app, "evaluate", help=HELP)
def evaluate(
    pred: Path = typer.Argument(..., help="Predicted (restored) cube."),
    ref: Path = typer.Argument(..., help="Reference (ground-truth) cube."),
    output: Path = typer.Option(None, "-o", "--output",
                                help="Report prefix (default: ./<PRED name>_report)."),
    data_range: float = typer.Option(1.0, "--data-range", help="Peak value for PSNR/SSIM."),
    ergas_ratio: float = typer.Option(1.0, "--ergas-ratio", help="ERGAS resolution ratio (1 for "
                                      "restoration, 1/s for x s super-resolution)."),
    var: str = typer.Option(None, help="Variable/dataset name in .mat/.h5 files (used for both "
                            "files; name one file's dataset as FILE.h5:/dataset instead)."),
    layout: str = typer.Option(None, help="bands-first or bands-last, when a .mat/HDF5/TIFF "
                               "array's band axis is ambiguous."),
    force: bool = typer.Option(False, help=FORCE_HELP),
) -> None:
    import sys

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from hsirestore.errors import OptionError
    from hsirestore.io import read_cube
    from hsirestore.cli.common import refuse_overwriting_inputs
    from hsirestore.io.atomic import check_writable
    from hsirestore.metrics import compare_cubes, report_paths, write_report
    from hsirestore.metrics.report import SUMMARY

    if not (np.isfinite(data_range) and data_range > 0):
        raise OptionError(f"--data-range must be > 0; got {data_range:g}")
    if not (np.isfinite(ergas_ratio) and ergas_ratio > 0):
        raise OptionError(f"--ergas-ratio must be > 0; got {ergas_ratio:g}")
    if output is None:
        output = Path(pred.stem + "_report")
    refuse_overwriting_inputs([pred, ref], report_paths(output))
    check_writable(report_paths(output), force)
    layout = check_layout(layout)
    p, r = read_cube(pred, var=var, layout=layout), read_cube(ref, var=var, layout=layout)
    m, notes = compare_cubes(p, r, data_range=data_range, ergas_ratio=ergas_ratio)
    wl = r.wavelengths if r.wavelengths is not None else p.wavelengths
    extra = {"prediction": str(pred), "reference": str(ref)}
    if notes:
        extra["notes"] = notes
    written = write_report(m, output, force=force, wavelengths=wl, extra=extra)

    err = Console(stderr=True)
    for n in notes:
        print(f"hsirestore: warning: {n}", file=sys.stderr)
    t = Table(title=f"{pred.name} vs {ref.name} (data range {data_range:g})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, label in SUMMARY:
        t.add_row(label, _fmt(m[k]))
    err.print(t)
    summary = {k: (round(m[k], 6) if np.isfinite(m[k]) else str(m[k])) for k, _ in SUMMARY}
    typer.echo(json.dumps({"report": [str(x) for x in written], **summary}))
