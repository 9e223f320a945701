"""`hsirestore render-rgb`: render an RGB image from a cube through a camera response."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import FORCE_HELP, check_layout, command

HELP = """Render CUBE (with band wavelengths) to an RGB image through a camera response.

--camera: a CSV response (NTIRE 2022 format 'Wavelength[nm],R,G1,G2,B', or a camspec file:
'#' comment lines, then wavelength,R,G,B or wavelength,R,G1,G2,B); 'ntire' for the NTIRE 2022
camera in the shared data folder ($HSIRESTORE_DATA or ../shared/data; it is GPL-3.0 data
and not shipped); 'cie' (default) for the built-in CIE 1931 observer mapped to linear sRGB
and white balanced. The cube is normalised first (--scaling, default auto: floats in
[0, 1] kept, 8-bit / 255, else / the 99.9th percentile), the response is sampled at the band
centres and scaled so that a white of value 1 in every band gives 1 in green; the result is
linear RGB clipped to [0, 1] (--gamma applies the sRGB transfer curve for viewing), written
with --bits 8 or 16 per channel (16 bits: PNG or TIFF). Invalid pixels are black.

To reconstruct a cube from the image with rgb2hsi, give rgb2hsi the same --camera (it maps
other cameras into its training camera, NTIRE) and --srgb if you used --gamma.

\b
Examples:
  hsirestore render-rgb scene.h5 scene.png --gamma
  hsirestore render-rgb scene.h5 scene16.png --camera ntire --bits 16
  hsirestore render-rgb scene.hdr canon.tif --camera Canon_60D.csv --bits 16
"""


@command(app, "render-rgb", help=HELP)
def render_rgb_cmd(
    cube: Path = typer.Argument(..., help="Input cube with wavelengths (nm or um)."),
    output: Path = typer.Argument(..., help="Output image (.png, .jpg, .tif)."),
    camera: str = typer.Option("cie", help="Camera response: a CSV file, 'ntire' or 'cie'."),
    bits: int = typer.Option(8, help="8 or 16 bits per channel."),
    gamma: bool = typer.Option(False, help="Apply the sRGB transfer curve (for viewing)."),
    scaling: str = typer.Option("auto", help="Normalisation rule: auto, none, dtype, max, "
                                             "percentile:P, scale:S."),
    var: str = typer.Option(None, help="Variable/dataset name in a .mat/.h5 input."),
    layout: str = typer.Option(None, help="bands-first or bands-last, when a .mat/HDF5/TIFF "
                               "array's band axis is ambiguous."),
    force: bool = typer.Option(False, help=FORCE_HELP),
) -> None:
    import numpy as np

    from hsirestore.errors import FormatError, InvalidValueError, OptionError
    from hsirestore.inference.normalize import fit_scaling
    from hsirestore.io import read_cube, write_rgb
    from hsirestore.cli.common import refuse_overwriting_inputs
    from hsirestore.io.atomic import check_writable
    from hsirestore.inference.camera import camera_response, resolve_camera
    from hsirestore.physics.rgb import default_camera_path, render_rgb, wavelengths_nm

    if bits not in (8, 16):
        raise OptionError(f"--bits must be 8 or 16; got {bits}")
    suffix = output.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        raise OptionError(f"{output}: the output must be .png, .jpg or .tif")
    if bits == 16 and suffix in (".jpg", ".jpeg"):
        raise OptionError("JPEG holds 8 bits per channel; use .png or .tif for --bits 16")
    kind, path = resolve_camera(camera)
    try:
        rwl, resp = camera_response(camera)
    except FormatError as e:
        raise FormatError(f"--camera {camera}: {e}") from None
    camera_label = {"cie": "CIE 1931 -> linear sRGB (built-in)",
                    "ntire": str(default_camera_path())}.get(kind, str(path))
    refuse_overwriting_inputs([cube], [output])
    check_writable([output], force)
    c = read_cube(cube, var=var, layout=check_layout(layout))
    if c.wavelengths is None:
        raise InvalidValueError(f"{cube} has no wavelengths; rendering needs band centres in nm")
    wl = wavelengths_nm(c.wavelengths, c.wavelength_units)
    norm = fit_scaling(c, scaling, c.source_dtype)
    rgb = render_rgb(norm.to_model(c.data), wl, rwl, resp)
    if gamma:
        rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    if c.valid is not None:
        rgb[:, ~c.valid] = 0.0
    write_rgb(rgb.astype(np.float32), output, force=force, bits=bits)
    typer.echo(json.dumps({"output": str(output), "camera": camera_label, "bits": bits,
                           "gamma": gamma, "normalisation": norm.describe()}))
