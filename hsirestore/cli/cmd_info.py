"""hsirestore info: shape, dtype, format, wavelengths, georeferencing, nodata, value range."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
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

_SAMPLE = 200_000  # values kept for percentiles


def cube_info(path: str, var: str | None = None, layout: str | None = None,
              strip_pixels: int = 1 << 22) -> dict:
    """A JSON-able description of the cube at ``path`` (windowed scan of the values)."""
    from hsirestore.io import detect_format, open_cube

    fmt = detect_format(path)
    src = open_cube(path, var=var, layout=layout)
    try:
        b, h, w = src.shape
        m = src.meta
        rows_per = max(1, strip_pixels // max(1, b * w))
        nodata = m.nodata
        vmin, vmax, total, n_valid_vals, invalid_px, missing = np.inf, -np.inf, 0.0, 0, 0, 0
        rng = np.random.default_rng(0)
        samples: list[np.ndarray] = []
        per_strip = max(1, _SAMPLE * rows_per // max(1, h))
        for r0 in range(0, h, rows_per):
            r1 = min(h, r0 + rows_per)
            blk = np.asarray(src.read_window(r0, r1, 0, w), dtype=np.float32)
            bad = ~np.isfinite(blk).all(axis=0)
            if nodata is not None and np.isfinite(nodata):
                bad |= (blk == np.float32(nodata)).all(axis=0)
            invalid_px += int(bad.sum())
            vals = blk[:, ~bad]
            vals = vals[np.isfinite(vals)]
            if nodata is not None and np.isfinite(nodata):  # single missing values
                hit = vals == np.float32(nodata)
                missing += int(hit.sum())
                vals = vals[~hit]
            if vals.size:
                vmin, vmax = min(vmin, float(vals.min())), max(vmax, float(vals.max()))
                total += float(vals.sum(dtype=np.float64))
                n_valid_vals += vals.size
                k = min(vals.size, per_strip)
                samples.append(vals if k == vals.size else rng.choice(vals, k, replace=False))
        stats = None
        if n_valid_vals:
            s = np.concatenate(samples)
            p1, p50, p99 = (float(v) for v in np.percentile(s, [1, 50, 99]))
            stats = {"min": vmin, "max": vmax, "mean": total / n_valid_vals,
                     "p1": p1, "p50": p50, "p99": p99}
        wl = m.wavelengths
        from hsirestore.inference.normalize import bad_bands

        bbl = bad_bands(m, b)
        attrs = m.attrs or {}
        if attrs.get("stored_dtype"):
            how = "band scales applied" if "band_scales" in attrs else "scale applied"
            read_as = f"{m.source_dtype} (stored {attrs['stored_dtype']}, {how})"
        elif "bits" in attrs and m.source_dtype in ("uint8", "uint16"):
            read_as = f"{m.source_dtype} (read as values / {np.iinfo(m.source_dtype).max})"
        else:
            read_as = m.source_dtype
        return {
            "path": str(path),
            "format": fmt,
            "shape": {"bands": b, "rows": h, "cols": w},
            "source_dtype": m.source_dtype,
            "stored_dtype": attrs.get("stored_dtype") or m.source_dtype,
            "read_as": read_as,
            "wavelengths": None if wl is None else {
                "count": int(wl.size), "min": float(wl.min()), "max": float(wl.max()),
                "values": [float(v) for v in wl]},
            "wavelength_units": m.wavelength_units,
            "fwhm": None if m.fwhm is None else [float(v) for v in m.fwhm],
            "band_names": m.band_names,
            "crs": m.crs,
            "epsg": _epsg(m.crs),
            "transform": None if m.transform is None else list(m.transform),
            "nodata": nodata,
            "invalid_pixels": invalid_px,
            "missing_values": missing,
            "bad_bands": None if bbl is None else [int(i) for i in np.flatnonzero(bbl)],
            "values": stats,
        }
    finally:
        src.close()


def _epsg(crs: str | None) -> int | None:
    """The EPSG code of a CRS string (WKT, PROJ or "EPSG:n") when it has one, else None."""
    if not crs:
        return None
    try:
        from rasterio.crs import CRS

        return CRS.from_user_input(crs).to_epsg()
    except Exception:  # an unparsable CRS is shown as stored
        return None


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
    from hsirestore.errors import FormatError

    check_layout(layout)
    file = Path(cube.split(":/", 1)[0]) if ":/" in cube else Path(cube)
    if not file.exists():
        raise FormatError(f"{cube}: file not found")
    d = cube_info(cube, var, layout)
    if as_json:
        from hsirestore.metrics.report import jsonable

        typer.echo(json.dumps(jsonable(d), indent=2, allow_nan=False))
    else:
        typer.echo(_text(d))
