"""`hsirestore degrade`: apply seeded synthetic degradations to a cube."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import SPECTRA_HELP, command, parse_pixels
from hsirestore.physics.degradations import DEGRADATION_TYPES


@command(app, "degrade", help=f"""Degrade a cube (for testing restorers): IN -> OUT.

Spec: name[:key=value,...][+name...], applied left to right. Names:
{', '.join(DEGRADATION_TYPES)}. Noise sigma is in units of 1/255 of the normalised range.
The cube is normalised first by --scale-rule (default auto: floats within [0, 1] kept,
8-bit divided by 255, anything else by its 99.9th percentile) and written back on its own
scale and dtype.

\b
Examples:
  hsirestore degrade clean.hdr noisy.hdr --degradation noise:sigma=30 --seed 0
  hsirestore degrade clean.h5 bad.h5 --degradation blur:sigma=1.6+noise:sigma=15
  hsirestore degrade scene.tif sr.tif --degradation sr:scale=4 --preview
""")
def degrade(
    src: Path = typer.Argument(..., help="Input cube."),
    dst: Path = typer.Argument(..., help="Output cube (format by suffix)."),
    degradation: str = typer.Option(..., "--degradation", "-d", help="Degradation spec."),
    seed: int = typer.Option(0, help="Random seed."),
    scale_rule: str = typer.Option("auto", help="auto, none, dtype, max, percentile:P or scale:S."),
    preview: bool = typer.Option(False, help="Write a false-colour PNG beside the output."),
    spectra: list[str] = typer.Option(None, help=SPECTRA_HELP),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    import numpy as np

    from hsirestore.io import output_paths, read_cube, write_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.physics.degradations import jsonable_info, parse_degradation

    deg = parse_degradation(degradation)
    png = dst.with_name(dst.stem + ".png")
    check_writable(output_paths(dst) + ([png] if preview else []), force)
    cube = read_cube(src)
    pixels = parse_pixels(spectra, cube.rows, cube.cols) if preview else None
    from hsirestore.inference.normalize import fit_scaling

    dt = np.dtype(cube.source_dtype or "float32")
    scaling = fit_scaling(cube, scale_rule, cube.source_dtype)
    y, info = deg.apply(scaling.to_model(cube.data), seed)
    info = jsonable_info(info)
    out = cube.with_data(scaling.from_model(y).astype(np.float32))
    info["normalisation"] = scaling.describe()
    out.attrs = {**cube.attrs, "degradation": json.dumps(info)}
    write_cube(out, dst, force=force, dtype=dt.name if dt.kind in "ui" else None)
    if preview:
        from hsirestore.preview import write_preview

        write_preview(out.data, png, wavelengths=cube.wavelengths, pixels=pixels, force=force)
    typer.echo(json.dumps({"output": str(dst), **info}))
