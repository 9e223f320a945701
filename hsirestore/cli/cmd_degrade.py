"""`hsirestore degrade`: apply seeded synthetic degradations to a cube."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.preview import preview_path
from hsirestore.cli.common import (FORCE_HELP, SPECTRA_HELP, check_cube_output, check_layout,
                                   command, parse_pixels)
from hsirestore.physics.degradations import DEGRADATION_TYPES

HELP = f"""Degrade a cube with seeded synthetic degradations (to test restorers): IN -> OUT.

--degradation: name[:key=value,...][+name...], applied left to right. Names:
{', '.join(DEGRADATION_TYPES)}. Defaults: noise sigma 30, niid-noise sigma 10-70 per band,
poisson peak 30, impulse ratio 0.1-0.7 per band, stripes / deadlines on 5-15 % of the columns
per band, blur sigma 1.6 px (or radius=R), motion-blur length 9 angle 0, sr scale 8 (down
and back up to the same size), inpaint ratio 0.7, band-missing ratio 0.3, haze density 0.5.
Noise sigma is in units of 1/255 of the normalised range.

Normalisation (the same rule as denoise): floats within [0, 1] (or noisy [0, 1] data) are kept, 8-bit
data are divided by 255, anything else by its 99.9th percentile; --scale S divides by S
instead (e.g. --scale 4095 for 12-bit counts), --scaling names any rule (auto, none, dtype,
max, percentile:P, scale:S). The result is written back on the input's scale, as integers
when the input held integer counts (clipped to the type's range), else float32. Invalid
(nodata) pixels stay invalid. The spec, the seed, the parameters actually drawn and the
normalisation are stored in the output's metadata (attribute 'degradation', JSON) and printed
as one JSON line.

\b
Examples:
  hsirestore degrade clean.hdr noisy.hdr --degradation noise:sigma=30 --seed 0
  hsirestore degrade clean.h5 bad.h5 -d blur:sigma=1.6+noise:sigma=15 --preview
  hsirestore degrade counts.tif sr.tif -d sr:scale=4 --scale 4095
  hsirestore degrade scene.mat holes.mat -d inpaint:ratio=0.5 --preview --spectra 10,20
"""


@command(app, "degrade", help=HELP)
def degrade(
    src: Path = typer.Argument(..., help="Input cube (ENVI .hdr, .tif, .mat, .h5)."),
    dst: Path = typer.Argument(..., help="Output cube (format by suffix)."),
    degradation: str = typer.Option(..., "--degradation", "-d",
                                    help="Degradation spec, e.g. blur+noise:sigma=30."),
    seed: int = typer.Option(0, help="Random seed, >= 0 (same seed, same result)."),
    scale: float = typer.Option(None, help="Divide the input by S to normalise it (overrides --scaling)."),
    scaling: str = typer.Option("auto", "--scaling", "--scale-rule",
                                help="Normalisation rule: auto, none, dtype, max, percentile:P, scale:S."),
    var: str = typer.Option(None, help="Variable/dataset name in a .mat/.h5 input."),
    layout: str = typer.Option(None, help="bands-first or bands-last, when a .mat/HDF5/TIFF "
                               "array's band axis is ambiguous."),
    preview: bool = typer.Option(False, help="Also write OUT_preview.png (false colour)."),
    spectra: list[str] = typer.Option(None, help=SPECTRA_HELP),
    force: bool = typer.Option(False, help=FORCE_HELP),
) -> None:
    import math

    from hsirestore.cli.common import refuse_overwriting_inputs
    from hsirestore.errors import OptionError
    from hsirestore.io import output_dtype_for, output_paths, read_cube, write_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.inference.degrade import degrade_cube
    from hsirestore.physics.degradations import parse_degradation
    from hsirestore.preview import spectra_path

    deg = parse_degradation(degradation)
    if seed < 0:
        raise OptionError(f"--seed must be >= 0; got {seed}")
    if scale is not None:
        if not (math.isfinite(scale) and scale > 0):
            raise OptionError(f"--scale must be > 0; got {scale:g}")
        scaling = f"scale:{scale:g}"
    if spectra and not preview:
        raise OptionError("--spectra needs --preview")
    check_cube_output(dst, "the degraded cube", allow_rgb=True)  # PNG/JPEG: 3-band inputs
    outs = output_paths(dst)
    png = preview_path(dst)
    extra = ([png] + ([spectra_path(png)] if spectra else [])) if preview else []
    refuse_overwriting_inputs([src], outs + extra)
    check_writable(outs + extra, force)
    cube = read_cube(src, var=var, layout=check_layout(layout))
    pixels = parse_pixels(spectra, cube.rows, cube.cols) if preview else None
    out, record = degrade_cube(cube, deg, seed, scaling, name=str(src))
    dtype = output_dtype_for(cube, dst)
    written = write_cube(out, dst, force=force, dtype=dtype)
    if preview:
        from hsirestore.preview import write_preview

        written += write_preview(out, png, pixels=pixels, force=force)
    typer.echo(json.dumps({"output": str(dst), "files": [str(p) for p in written],
                           "dtype": dtype or "float32", **record}))
