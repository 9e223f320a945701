"""Describe a cube file without loading it whole (what ``hsirestore info`` prints; no torch)."""
from __future__ import annotations

import numpy as np

from hsirestore.errors import FormatError
from hsirestore.io.common import equals_nodata, valid_mask

SAMPLE_VALUES = 200_000  # valid values kept for the percentiles


def describe_cube(path, var: str | None = None, layout: str | None = None,
                  strip_pixels: int = 1 << 22) -> dict:
    """A JSON-able description of the cube at ``path`` (``file.h5:/dataset`` too): format,
    shape, how values are read, wavelengths, fwhm, CRS/EPSG, transform, nodata, invalid
    pixels and single missing values (the readers' rule, :func:`io.common.valid_mask`), ENVI
    bad bands, and min/max/mean over the valid values with percentiles 1/50/99 from a
    bounded random sample. Values are read in row strips of about ``strip_pixels`` values.
    FormatError when the file does not exist."""
    from hsirestore.io import detect_format, open_cube
    from hsirestore.io.hdf5 import split_path

    if not split_path(path)[0].exists():
        raise FormatError(f"{path}: file not found")
    fmt = detect_format(path)
    src = open_cube(path, var=var, layout=layout)
    try:
        b, h, w = src.shape
        m = src.meta
        stats, invalid_px, missing = _scan(src, m.nodata, strip_pixels)
        from hsirestore.io.common import bad_bands

        bbl = bad_bands(m, b)
        attrs = m.attrs or {}
        wl = m.wavelengths
        return {
            "path": str(path),
            "format": fmt,
            "shape": {"bands": b, "rows": h, "cols": w},
            "source_dtype": m.source_dtype,
            "stored_dtype": attrs.get("stored_dtype") or m.source_dtype,
            "read_as": _read_as(m),
            "wavelengths": None if wl is None else {
                "count": int(wl.size), "min": float(wl.min()), "max": float(wl.max()),
                "values": [float(v) for v in wl]},
            "wavelength_units": m.wavelength_units,
            "fwhm": None if m.fwhm is None else [float(v) for v in m.fwhm],
            "band_names": m.band_names,
            "crs": m.crs,
            "epsg": epsg_code(m.crs),
            "transform": None if m.transform is None else list(m.transform),
            "nodata": m.nodata,
            "invalid_pixels": invalid_px,
            "missing_values": missing,
            "bad_bands": None if bbl is None else [int(i) for i in np.flatnonzero(bbl)],
            "values": stats,
        }
    finally:
        src.close()


def _scan(src, nodata, strip_pixels: int) -> tuple[dict | None, int, int]:
    """(value statistics or None, invalid pixels, single missing values) of a source read
    in row strips."""
    b, h, w = src.shape
    rows_per = max(1, strip_pixels // max(1, b * w))
    vmin, vmax, total, n_vals, invalid_px, missing = np.inf, -np.inf, 0.0, 0, 0, 0
    rng = np.random.default_rng(0)
    samples: list[np.ndarray] = []
    per_strip = max(1, SAMPLE_VALUES * rows_per // max(1, h))
    for r0 in range(0, h, rows_per):
        blk = np.asarray(src.read_window(r0, min(h, r0 + rows_per), 0, w), dtype=np.float32)
        ok = valid_mask(blk, nodata)
        if ok is not None:
            invalid_px += int((~ok).sum())
            vals = blk[:, ok]
        else:
            vals = blk.reshape(b, -1)
        vals = vals[np.isfinite(vals)]
        hit = equals_nodata(vals, nodata)  # single missing values of valid pixels
        if hit is not None:
            missing += int(hit.sum())
            vals = vals[~hit]
        if vals.size:
            vmin, vmax = min(vmin, float(vals.min())), max(vmax, float(vals.max()))
            total += float(vals.sum(dtype=np.float64))
            n_vals += vals.size
            k = min(vals.size, per_strip)
            samples.append(vals if k == vals.size else rng.choice(vals, k, replace=False))
    if not n_vals:
        return None, invalid_px, missing
    p1, p50, p99 = (float(v) for v in np.percentile(np.concatenate(samples), [1, 50, 99]))
    return ({"min": vmin, "max": vmax, "mean": total / n_vals, "p1": p1, "p50": p50,
             "p99": p99}, invalid_px, missing)


def _read_as(m) -> str | None:
    """How values are read: the source dtype, plus the stored type and scaling when the
    reader applied one (e.g. "float32 (stored int16, band scales applied)")."""
    attrs = m.attrs or {}
    if attrs.get("stored_dtype"):
        how = "band scales applied" if "band_scales" in attrs else (
            f"x {attrs['scale']:.6g}" if isinstance(attrs.get("scale"), (int, float)) else "scale applied")
        return f"{m.source_dtype} (stored {attrs['stored_dtype']}, {how})"
    return m.source_dtype


def epsg_code(crs: str | None) -> int | None:
    """The EPSG code of a CRS string (WKT, PROJ or "EPSG:n") when it has one, else None."""
    if not crs:
        return None
    try:
        from rasterio.crs import CRS

        return CRS.from_user_input(crs).to_epsg()
    except Exception:  # an unparsable CRS is shown as stored
        return None
