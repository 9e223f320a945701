"""Helpers shared by the format modules: valid masks, layout detection, dtype casts."""
from __future__ import annotations

import numpy as np

from hsirestore.errors import AmbiguousInputError, FormatError

LAYOUTS = ("bands-first", "bands-last")


def equals_nodata(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """bool array (``data``'s shape): entries equal to ``nodata``, compared in the data's
    precision (a float32 cube holds float32(nodata)); None when there is no finite nodata.
    The one nodata test of the package (readers, normalisation, restoration)."""
    if nodata is None or not np.isfinite(nodata):
        return None
    data = np.asarray(data)
    return data == (data.dtype.type(nodata) if data.dtype.kind == "f" else nodata)


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """(rows, cols) bool: True where every band is finite and not ``nodata``; None if all."""
    bad = ~np.isfinite(data).all(axis=0)
    eq = equals_nodata(data, nodata)
    if eq is not None:
        bad |= eq.all(axis=0)
    return None if not bad.any() else ~bad


def clean(data: np.ndarray, nodata: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 data with NaN/Inf replaced by 0, plus the valid mask.

    Rule (documented in the README): a pixel is invalid when any band is NaN/Inf or when all
    bands equal the file's nodata value; invalid pixels keep their (zeroed) values in
    ``Cube.data`` and are flagged False in ``Cube.valid``.
    """
    data = np.asarray(data, dtype=np.float32)
    valid = valid_mask(data, nodata)
    if not np.isfinite(data).all():
        data = np.where(np.isfinite(data), data, np.float32(0))
    return data, valid


def guess_units(wavelengths, units: str | None = None) -> str | None:
    """``units`` when the file gives them, else "um" when every wavelength is below 30 (no
    sensor has bands under 30 nm) and "nm" otherwise; None without wavelengths."""
    if units is not None and str(units).strip():
        return str(units).strip()
    if wavelengths is None:
        return None
    wl = np.asarray(wavelengths, np.float64).reshape(-1)
    wl = wl[np.isfinite(wl)]
    if not wl.size:
        return None
    return "um" if np.abs(wl).max() < 30 else "nm"


def band_layout(shape: tuple[int, ...], layout: str | None, source: str) -> str:
    """'2-D', 'bands-first' or 'bands-last' for an array of ``shape`` (the rule of
    :func:`to_bands_first`, decided from the shape alone so that files can be read by
    windows); raises the same errors."""
    if len(shape) == 2:
        return "2-D"
    if len(shape) != 3:
        raise FormatError(f"{source}: expected a 2-D or 3-D array, got shape {tuple(shape)}")
    if layout is None:
        a, b, c = shape
        if a < b and a < c:
            layout = "bands-first"
        elif c < a and c < b:
            layout = "bands-last"
        else:
            raise AmbiguousInputError(
                f"{source}: cannot tell the band axis of shape {tuple(shape)}; "
                "pass --layout bands-first or --layout bands-last")
    if layout in LAYOUTS:
        return layout
    raise FormatError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")


def to_bands_first(arr: np.ndarray, layout: str | None, source: str) -> np.ndarray:
    """Reorder a 3-D array to (bands, rows, cols).

    ``layout`` None: the band axis is taken to be the smallest axis when it is strictly
    smaller than the two others and the array is either (bands, rows, cols) or
    (rows, cols, bands); anything else is ambiguous and must be given with --layout.
    """
    found = band_layout(arr.shape, layout, source)
    if found == "2-D":
        return arr[None]
    if found == "bands-first":
        return arr
    return np.moveaxis(arr, -1, 0)


def cast_for_writing(data: np.ndarray, dtype: str | None) -> np.ndarray:
    """float32 data -> the requested dtype (round and clip for integers)."""
    if dtype is None or np.dtype(dtype) == np.float32:
        return np.ascontiguousarray(data, dtype=np.float32)
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        info = np.iinfo(dt)
        return np.clip(np.rint(data), info.min, info.max).astype(dt)
    if dt.kind == "f":
        return data.astype(dt)
    raise FormatError(f"cannot write data type {dtype}")


def check_block(shape: tuple[int, int, int], r0: int, c0: int, block: np.ndarray) -> np.ndarray:
    """``block`` as an array, or ShapeError when a (bands, h, w) block at (r0, c0) does not
    lie inside a cube of ``shape`` (bands, rows, cols)."""
    from hsirestore.errors import ShapeError

    block = np.asarray(block)
    if block.ndim != 3 or block.shape[0] != shape[0] or r0 < 0 or c0 < 0 \
            or r0 + block.shape[1] > shape[1] or c0 + block.shape[2] > shape[2]:
        raise ShapeError(f"block of shape {block.shape} at ({r0}, {c0}) does not fit a cube of "
                         f"shape {tuple(shape)}")
    return block


def invalid_fill(nodata: float | None, dtype) -> float | None:
    """The value written for invalid pixels: the cube's nodata when it has one, else NaN for
    float outputs (None: keep NaN) and 0 for integer outputs (which cannot hold NaN, so a NaN
    nodata is written as 0 there too)."""
    integer = np.dtype(dtype).kind in "ui"
    if nodata is not None and (np.isfinite(nodata) or not integer):
        return float(nodata)
    return 0.0 if integer else None


def fill_invalid(data: np.ndarray, fill: float | None, valid: np.ndarray | None = None,
                 dtype=None, nodata: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bands, h, w) float data with every invalid pixel -- ``valid`` False or a non-finite
    value in any band -- set to ``fill`` in all bands (NaN when ``fill`` is None), plus the
    (h, w) bool mask of those pixels. With an integer output ``dtype`` and a declared
    ``nodata`` (the fill), values of valid pixels that would round to it are moved one count
    away, so that they are not read back as nodata. The input array is never modified."""
    bad = ~np.isfinite(data).all(axis=0)
    if valid is not None:
        bad |= ~np.asarray(valid, bool)
    if (dtype is not None and nodata is not None and np.isfinite(nodata) and fill == nodata
            and np.dtype(dtype).kind in "ui"):
        info = np.iinfo(np.dtype(dtype))
        with np.errstate(invalid="ignore"):
            at = np.clip(np.rint(data), info.min, info.max) == fill
        # a pixel at nodata in every band is a nodata pixel (the readers' rule), not a clash
        clash = at & ~(bad | at.all(axis=0))[None]
        if clash.any():
            data = np.array(data, dtype=np.float32)
            data[clash] = np.float32(fill + 1 if fill < info.max else fill - 1)
    if bad.any():
        data = np.array(data, dtype=np.float32)
        data[:, bad] = np.float32(np.nan if fill is None else fill)
    return data, bad


#: Cube.attrs keys that describe how a file was read, not what was done to the data
_READER_KEYS = frozenset({"dataset", "variable", "mat_version", "tiff", "description",
                          "stored_dtype", "scale", "band_scales", "band_offsets"})


def provenance(attrs: dict) -> dict[str, str]:
    """Processing notes worth keeping in an output's metadata (e.g. ``restoration``,
    ``restoration_model``, ``method``): the str/int/float entries of ``Cube.attrs`` that
    are not reader bookkeeping, as single-line strings without braces."""
    out = {}
    for k, v in attrs.items():
        if k in _READER_KEYS or isinstance(v, bool) or not isinstance(v, (str, int, float)):
            continue
        out[str(k)] = " ".join(str(v).replace("{", "(").replace("}", ")").split())
    return out


def bad_bands(meta, bands: int) -> np.ndarray | None:
    """bool (bands,): the bands an ENVI bad band list flags (``bbl`` = 0, kept by the ENVI
    reader in ``attrs["envi_header"]``); None when there is no list, it does not fit
    ``bands``, or it flags no band (or every band)."""
    attrs = getattr(meta, "attrs", None)
    header = attrs.get("envi_header") if isinstance(attrs, dict) else None
    bbl = header.get("bbl") if isinstance(header, dict) else None
    if not isinstance(bbl, (list, tuple)) or len(bbl) != bands:
        return None
    try:
        bad = np.array([float(v) == 0 for v in bbl])
    except (TypeError, ValueError):
        return None
    return bad if bad.any() and not bad.all() else None
