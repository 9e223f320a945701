"""`hsirestore render-rgb`: render an RGB image from a cube through a camera response."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import command


@command(app, "render-rgb", help="""Render CUBE to an RGB image through a camera response.

The response is a CSV (NTIRE 2022 format with R, G1, G2, B columns, or camspec
Wavelength[nm],R,G1,G2,B); without --camera the CIE 1931 observer mapped to linear sRGB is
used. Output is linear RGB normalised so that a white of reflectance 1 gives 1 in green;
--gamma applies the sRGB curve for viewing.

\b
Examples:
  hsirestore render-rgb scene.h5 scene.png
  hsirestore render-rgb scene.h5 scene16.png --camera ntire2022_rgb_qe.csv --bits 16
""")
def render_rgb_cmd(
    cube: Path = typer.Argument(..., help="Input cube with wavelengths (nm)."),
    output: Path = typer.Argument(..., help="Output image (.png, .jpg, .tif)."),
    camera: Path = typer.Option(None, help="Camera response CSV."),
    bits: int = typer.Option(8, help="8 or 16 bits per channel."),
    gamma: bool = typer.Option(False, help="Apply the sRGB transfer curve."),
    force: bool = typer.Option(False, help="Overwrite an existing output."),
) -> None:
    import numpy as np

    from hsirestore.errors import OptionError
    from hsirestore.io import read_cube, write_rgb
    from hsirestore.io.atomic import check_writable
    from hsirestore.physics.rgb import load_camera_response, render_rgb

    if bits not in (8, 16):
        raise OptionError("--bits must be 8 or 16")
    check_writable([output], force)
    c = read_cube(cube)
    if c.wavelengths is None:
        raise OptionError(f"{cube} has no wavelengths; rendering needs band centres in nm")
    wl = c.wavelengths * (1000.0 if (c.wavelength_units or "").lower() in ("um", "micrometers", "µm") else 1.0)
    rwl, resp = load_camera_response(camera) if camera else (None, None)
    rgb = render_rgb(c.data, wl, rwl, resp)
    if gamma:
        rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    write_rgb(rgb, output, force=force, bits=bits)
    typer.echo(json.dumps({"output": str(output), "camera": str(camera) if camera else "CIE 1931 -> sRGB"}))
