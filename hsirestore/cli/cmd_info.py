"""hsirestore info: shape, dtype, format, wavelengths, georeferencing, nodata, value range."""
from __future__ import annotations

import json
from typing import Optional

import typer

from hsirestore.cli.app import app
from hsirestore.cli.common import command

HELP = """Describe a cube: shape (bands x rows x cols), data type, format, wavelengths,
fwhm, units, CRS and transform, nodata, invalid-pixel and missing-value counts, bad bands
(ENVI bbl), value range.

The data type line says how values are read: as stored, or with the file's scale applied
(e.g. "float32 (stored int16, band scales applied)", "uint8 (read as values / 255)"). The
value range covers valid values only: pixels that are NaN or nodata in every band, and
single values equal to nodata (missing values), are left out.

Values are scanned in row strips, so big ENVI/GeoTIFF/HDF5 files never load whole; percentiles
(1, 50, 99) come from a bounded random sample of valid values.

\b
Examples:
  hsirestore info scene.hdr
  hsirestore info cube.mat --var rad --layout bands-last --json
  hsirestore info cave.h5:/cube
"""

def _text(d: dict) -> str:
    s = d["shape"]
    lines = [f"file:        {d['path']}",
             f"format:      {d['format']}",
             f"shape:       {s['bands']} bands x {s['rows']} rows x {s['cols']} cols",
             f"dtype:       {d['read_as'] or 'unknown'}"]
    wl = d["wavelengths"]
    units = d["wavelength_units"] or ""
    lines.append("wavelengths: none" if wl is None else
                 f"wavelengths: {wl['count']} from {wl['min']:g} to {wl['max']:g} {units}".rstrip())
    if d["fwhm"] is not None:
        f = d["fwhm"]
        lines.append(f"fwhm:        {min(f):g} .. {max(f):g} {units}".rstrip())
    crs = f"EPSG:{d['epsg']}" if d.get("epsg") else (d["crs"] or "none")
    lines.append(f"crs:         {crs[:100]}")
    if d["transform"] is not None:
        lines.append("transform:   " + ", ".join(f"{v:g}" for v in d["transform"]))
    lines.append(f"nodata:      {d['nodata'] if d['nodata'] is not None else 'none'}")
    total = s["rows"] * s["cols"]
    lines.append(f"invalid:     {d['invalid_pixels']} of {total} pixels"
                 + (f"; {d['missing_values']} missing values (nodata in single bands)"
                    if d["missing_values"] else ""))
    if d["bad_bands"]:
        lines.append(f"bad bands:   {len(d['bad_bands'])} (bbl = 0; 0-based: "
                     + ", ".join(map(str, d["bad_bands"][:20])) + (" ..." if len(d["bad_bands"]) > 20 else "")
                     + ")")
    v = d["values"]
    lines.append("values:      no valid values" if v is None else
                 f"values:      min {v['min']:.6g}, max {v['max']:.6g}, mean {v['mean']:.6g}, "
                 f"p1 {v['p1']:.6g}, p50 {v['p50']:.6g}, p99 {v['p99']:.6g}")
    return "\n".join(lines)


@command(app, "info", help=HELP)
def info(
    cube: str = typer.Argument(..., help="Cube file (ENVI .hdr, .tif, .mat, .h5[:/dataset], .png)."),
    var: Optional[str] = typer.Option(None, "--var", help="Variable/dataset in a .mat or HDF5 file."),
    layout: Optional[str] = typer.Option(
        None, "--layout", help="bands-first or bands-last, when the file's layout is ambiguous."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    from hsirestore.cli.common import check_layout
    from hsirestore.io import describe_cube

    d = describe_cube(cube, var, check_layout(layout))
    if as_json:
        from hsirestore.metrics.report import jsonable

        typer.echo(json.dumps(jsonable(d), indent=2, allow_nan=False))
    else:
        typer.echo(_text(d))
