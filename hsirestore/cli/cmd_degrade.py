"""`hsirestore degrade`: apply seeded synthetic degradations to a cube."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import FORCE_HELP, SPECTRA_HELP, check_layout, command, parse_pixels
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
    import numpy as np

    from hsirestore.cli.common import output_dtype, refuse_overwriting_inputs
    from hsirestore.errors import InvalidValueError, OptionError
    from hsirestore.inference.normalize import (fill_missing_entries, fit_scaling, invalid_mask,
                                                missing_entries)
    from hsirestore.io import output_paths, read_cube, write_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.physics.degradations import jsonable_info, parse_degradation
    from hsirestore.preview import spectra_path

    deg = parse_degradation(degradation)
    if seed < 0:
        raise OptionError(f"--seed must be >= 0; got {seed}")
    if scale is not None:
        if not (np.isfinite(scale) and scale > 0):
            raise OptionError(f"--scale must be > 0; got {scale:g}")
        scaling = f"scale:{scale:g}"
    if spectra and not preview:
        raise OptionError("--spectra needs --preview")
    outs = output_paths(dst)
    png = dst.with_name(dst.stem + "_preview.png")
    extra = ([png] + ([spectra_path(png)] if spectra else [])) if preview else []
    refuse_overwriting_inputs([src], outs + extra)
    check_writable(outs + extra, force)
    cube = read_cube(src, var=var, layout=check_layout(layout))
    pixels = parse_pixels(spectra, cube.rows, cube.cols) if preview else None

    bad = invalid_mask(cube.data, cube.nodata)
    if cube.valid is not None:
        bad |= ~cube.valid
    if bad.all():
        raise InvalidValueError(f"{src}: no valid pixel (every pixel is NaN or nodata)")
    # RGB images are read already divided by 255 / 65535 (values in [0, 1]): scale them as
    # the floats they now are, not as 8-bit counts (that divided by 255 twice)
    prescaled = "bits" in cube.attrs
    norm = fit_scaling(cube, scaling, "float32" if prescaled else cube.source_dtype)
    x = norm.to_model(cube.data)
    # nodata must not leak into valid pixels through blurs and resampling: degrade a copy
    # whose holes are filled (single nodata values from the pixel's other bands, invalid
    # pixels with the band means), then put the holes back as read
    holes = missing_entries(cube.data, cube.nodata)
    xin = x
    if holes is not None or bad.any():
        xin = x.copy()
        if holes is not None:
            holes &= ~bad[None]
            fill_missing_entries(xin, holes)
        xin[:, bad] = xin[:, ~bad].mean(axis=1, keepdims=True)
    y, info = deg.apply(xin, seed)
    y[:, bad] = x[:, bad]  # invalid pixels and single nodata values stay as read
    if holes is not None:
        y[holes] = x[holes]
    record = {**jsonable_info(info), "seed": seed, "normalisation": norm.describe()}
    out = cube.with_data(np.asarray(norm.from_model(y), np.float32))
    out.attrs = {**cube.attrs, "degradation": json.dumps(record)}
    dtype = output_dtype(cube, cube.data[:, ::7, ::7], dst)
    if dtype is not None and "band_scales" not in cube.attrs:  # counts: round them
        info_t = np.iinfo(dtype)
        out.data = np.clip(np.rint(out.data), info_t.min, info_t.max).astype(np.float32)
    written = write_cube(out, dst, force=force, dtype=dtype)
    if preview:
        from hsirestore.preview import write_preview

        written += write_preview(out, png, pixels=pixels, force=force)
    typer.echo(json.dumps({"output": str(dst), "files": [str(p) for p in written],
                           "dtype": dtype or "float32", **record}))
