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
    from hsirestore.cli.common import check_cube_output, refuse_overwriting_inputs
    from hsirestore.errors import OptionError
    from hsirestore.io import output_paths, read_cube, write_cube
    from hsirestore.io.atomic import check_writable
    from hsirestore.physics.cassi import check_simulation_options, simulate_measurement

    check_simulation_options(step, crop, shot_noise, seed)
    check_cube_output(output, "the measurement")
    targets = output_paths(output)
    if save_reference is not None:
        check_cube_output(save_reference, "the reference cube", option="--save-reference")
        ref_targets = output_paths(save_reference)
        if {p.resolve() for p in ref_targets} & {p.resolve() for p in targets}:
            raise OptionError(f"--save-reference {save_reference} and -o {output} would write the "
                              "same file; choose another name")
        targets = targets + ref_targets
    refuse_overwriting_inputs([cube, mask], targets)
    check_writable(targets, force)
    c = read_cube(cube, var=var, layout=check_layout(layout))
    meas, ref = simulate_measurement(c, read_cube(mask, var=mask_var), step, to_28=to_28, crop=crop,
                                     shot_noise=shot_noise, seed=seed, name=str(cube),
                                     mask_name=str(mask))
    write_cube(meas, output, force=force, var="meas")
    result = {"output": str(output), "shape": list(meas.shape[1:]), "bands": ref.bands}
    if save_reference is not None:
        ref.attrs = {"source": str(cube), **ref.attrs}
        write_cube(ref, save_reference, force=force, var="cube")
        result["reference"] = str(save_reference)
    typer.echo(json.dumps(result))
