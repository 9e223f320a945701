"""`hsirestore simulate-cassi`: make a CASSI snapshot of a cube."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import command


@command(app, "simulate-cassi", help="""Simulate a CASSI snapshot: y = sum_k shift(mask * x_k, step*k).

The cube must have as many bands as the system (28 for the TSA-Net geometry); a cube with
wavelengths can be resampled onto the 28 TSA-Net band centres with --to-28. The mask must
have the cube's rows x cols. Shot noise: Poisson with PHOTONS counts at value 1.

\b
Examples:
  hsirestore simulate-cassi scene.h5 --mask mask_256.mat -o meas.mat
  hsirestore simulate-cassi cave_scene.h5 --mask mask_256.mat --to-28 --crop 256 -o meas.mat
""")
def simulate_cassi(
    cube: Path = typer.Argument(..., help="Input cube."),
    mask: Path = typer.Option(..., "--mask", help="Coded-aperture mask (rows x cols)."),
    output: Path = typer.Option(..., "-o", "--output", help="Measurement file (.mat, .h5, .tif)."),
    mask_var: str = typer.Option(None, help="Variable/dataset of the mask."),
    step: int = typer.Option(2, help="Dispersion step in pixels per band."),
    to_28: bool = typer.Option(False, "--to-28", help="Resample the cube onto the 28 TSA-Net bands first."),
    crop: int = typer.Option(0, help="Centre crop to this size first (0: none)."),
    shot_noise: float = typer.Option(0.0, help="Photons at value 1 (0: noiseless)."),
    seed: int = typer.Option(0, help="Seed for the shot noise."),
    force: bool = typer.Option(False, help="Overwrite existing outputs."),
) -> None:
    import numpy as np

    from hsirestore.errors import OptionError, ShapeError
    from hsirestore.io import Cube, read_cube, write_cube
    from hsirestore.physics.cassi import CASSI_WAVELENGTHS_28, cassi_forward, interpolate_bands

    c = read_cube(cube)
    data = c.data
    if to_28:
        if c.wavelengths is None:
            raise OptionError(f"{cube} has no wavelengths, so --to-28 cannot resample it")
        data = interpolate_bands(data, c.wavelengths, CASSI_WAVELENGTHS_28)
    if crop:
        _, h, w = data.shape
        if crop > min(h, w):
            raise OptionError(f"--crop {crop} is larger than the cube ({h}x{w})")
        r0, c0 = (h - crop) // 2, (w - crop) // 2
        data = data[:, r0 : r0 + crop, c0 : c0 + crop]
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
               output, force=force)
    typer.echo(json.dumps({"output": str(output), "shape": list(y.shape), "bands": data.shape[0]}))
