"""`hsirestore simulate-cassi`: make a CASSI snapshot of a cube."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import check_layout, command


@command(app, "simulate-cassi", help="""Simulate a CASSI snapshot: y = sum_k shift(mask * x_k, step*k).

Every band of the cube is one band of the simulated system; the shipped decoders expect the
28-band TSA-Net geometry, so resample a cube with wavelengths (nm or um) onto the 28 TSA-Net
band centres with --to-28. The mask must have the cube's rows x cols, and the cube must have
no invalid (nodata/NaN) pixels: crop them away first. Shot noise: Poisson with PHOTONS
counts at value 1. A .mat measurement is stored as the variable `meas`. --save-reference
writes the (cropped, resampled) cube the measurement was simulated from, with its
wavelengths, for `hsirestore cassi --reference`.

\b
Examples:
  hsirestore simulate-cassi scene.h5 --mask mask_256.mat -o meas.mat
  hsirestore simulate-cassi cave_scene.h5 --mask mask_256.mat --to-28 --crop 256 -o meas.mat \\
      --save-reference scene28.h5
  hsirestore cassi meas.mat --mask mask_256.mat --reference scene28.h5
""")
def simulate_cassi(
    cube: Path = typer.Argument(..., help="Input cube."),
    mask: Path = typer.Option(..., "--mask", help="Coded-aperture mask (rows x cols)."),
    output: Path = typer.Option(..., "-o", "--output", help="Measurement file (.mat, .h5, .tif)."),
    save_reference: Path = typer.Option(
        None, "--save-reference",
        help="Also write the cube the measurement was simulated from (after --crop and "
             "--to-28, with its wavelengths) to this file (.h5, .mat, .hdr, .tif): the "
             "reference for `hsirestore cassi --reference`."),
    mask_var: str = typer.Option(None, help="Variable/dataset of the mask."),
    var: str = typer.Option(None, help="Variable/dataset of the cube in a .mat/.h5 input."),
    layout: str = typer.Option(None, help="bands-first or bands-last, when a .mat/HDF5/TIFF "
                               "array's band axis is ambiguous."),
    step: int = typer.Option(2, help="Dispersion step in pixels per band (>= 1)."),
    to_28: bool = typer.Option(False, "--to-28", help="Resample the cube onto the 28 TSA-Net bands first."),
    crop: int = typer.Option(0, help="Centre crop to this size first (0: none)."),
    shot_noise: float = typer.Option(0.0, help="Photons at value 1 (0: noiseless)."),
    seed: int = typer.Option(0, help="Seed for the shot noise (>= 0)."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    import numpy as np

    from hsirestore.errors import InvalidValueError, OptionError, ShapeError
    from hsirestore.cli.common import refuse_overwriting_inputs
    from hsirestore.io import Cube, detect_format, output_paths, read_cube, write_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28, cassi_forward, interpolate_bands
    from hsirestore.physics.rgb import wavelengths_nm

    if step < 1:
        raise OptionError(f"--step must be >= 1 pixel per band; got {step}")
    if crop < 0:
        raise OptionError(f"--crop must be >= 0 (0: no crop); got {crop}")
    if not (np.isfinite(shot_noise) and shot_noise >= 0):
        raise OptionError(f"--shot-noise must be >= 0 photons (0: noiseless); got {shot_noise:g}")
    if seed < 0:
        raise OptionError(f"--seed must be >= 0; got {seed}")
    targets = output_paths(output)
    if save_reference is not None:
        if detect_format(save_reference) == "rgb":
            raise OptionError(f"--save-reference {save_reference}: a cube needs a cube format "
                              "(.h5, .mat, .hdr, .tif), not PNG/JPEG")
        ref_targets = output_paths(save_reference)
        if {p.resolve() for p in ref_targets} & {p.resolve() for p in targets}:
            raise OptionError(f"--save-reference {save_reference} and -o {output} would write the "
                              "same file; choose another name")
        targets = targets + ref_targets
    refuse_overwriting_inputs([cube, mask], targets)
    check_writable(targets, force)
    c = read_cube(cube, var=var, layout=check_layout(layout))
    if c.bands < 2:
        raise ShapeError(f"{cube}: a CASSI snapshot needs a cube with several bands; got {c.bands}")
    data, valid = c.data, c.valid
    wl_out, units_out, fwhm, band_names = c.wavelengths, c.wavelength_units, c.fwhm, c.band_names
    transform = c.transform
    if to_28:
        if c.wavelengths is None:
            raise InvalidValueError(f"{cube} has no wavelengths, so --to-28 cannot resample it")
        wl = wavelengths_nm(c.wavelengths, c.wavelength_units)
        if wl.min() > CASSI_WAVELENGTHS_28[0] + 10 or wl.max() < CASSI_WAVELENGTHS_28[-1] - 10:
            raise InvalidValueError(f"{cube}: its bands ({wl.min():g}-{wl.max():g} nm) do not cover the "
                              f"28 TSA-Net bands ({CASSI_WAVELENGTHS_28[0]:g}-"
                              f"{CASSI_WAVELENGTHS_28[-1]:g} nm) that --to-28 resamples onto")
        data = interpolate_bands(data, wl, CASSI_WAVELENGTHS_28)
        wl_out, units_out, fwhm, band_names = np.asarray(CASSI_WAVELENGTHS_28), "nm", None, None
    if crop:
        _, h, w = data.shape
        if crop > min(h, w):
            raise OptionError(f"--crop {crop} is larger than the cube ({h}x{w})")
        r0, c0 = (h - crop) // 2, (w - crop) // 2
        data = data[:, r0 : r0 + crop, c0 : c0 + crop]
        valid = None if valid is None else valid[r0 : r0 + crop, c0 : c0 + crop]
        if transform is not None:  # move the origin to the crop's top-left pixel
            a, b, x0, d, e, y0 = transform
            transform = (a, b, x0 + a * c0 + b * r0, d, e, y0 + d * c0 + e * r0)
    if valid is not None and not valid.all():
        raise InvalidValueError(f"{cube}: {int((~valid).sum())} invalid (nodata/NaN) pixels "
                                "in the simulated area; a CASSI snapshot mixes neighbouring "
                                "pixels, so crop them away first (--crop)")
    m = read_cube(mask, var=mask_var)
    if m.bands != 1:
        raise ShapeError(f"{mask}: expected a 2-D mask, got {m.bands} planes")
    if m.data.shape[1:] != data.shape[1:]:
        raise ShapeError(f"mask {m.rows}x{m.cols} does not match the cube's {data.shape[1]}x{data.shape[2]}")
    y = cassi_forward(data, m.data[0], step)
    if shot_noise > 0:
        rng = np.random.default_rng(seed)
        y = rng.poisson(np.clip(y, 0, None) * shot_noise).astype(np.float32) / np.float32(shot_noise)
    write_cube(Cube(y[None].astype(np.float32), attrs={"bands": data.shape[0], "step": step}),
               output, force=force, var="meas")
    result = {"output": str(output), "shape": list(y.shape), "bands": data.shape[0]}
    if save_reference is not None:
        attrs = {"source": str(cube)}
        if to_28:
            attrs["resampled"] = "28 TSA-Net bands"
        if crop:
            attrs["crop"] = crop
        ref = Cube(np.ascontiguousarray(data, dtype=np.float32), wavelengths=wl_out,
                   wavelength_units=units_out, fwhm=fwhm, band_names=band_names, nodata=c.nodata,
                   crs=c.crs, transform=transform, attrs=attrs)
        write_cube(ref, save_reference, force=force, var="cube")
        result["reference"] = str(save_reference)
    typer.echo(json.dumps(result))
