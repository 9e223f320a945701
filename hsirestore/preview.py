"""Quick looks (numpy + Pillow only): a false-colour PNG and a spectra plot at chosen pixels.

False colour: the bands nearest 640 / 550 / 460 nm shown as R / G / B when the wavelengths
cover the visible range (nm or micrometres), else bands spread over the cube (80 %, 50 %,
15 % of the band range; bands 0, 1, 2 for a 3-band cube); each channel is stretched between
its 2nd and 98th percentile over the valid pixels, clipped, and shown with a 1/1.5 gamma.
Invalid / non-finite pixels are black.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsirestore.errors import OptionError, ShapeError
from hsirestore.io.atomic import atomic_paths

__all__ = ["TARGETS_NM", "pick_bands", "false_colour", "spectra_plot", "write_preview",
           "spectra_path"]

TARGETS_NM = (640.0, 550.0, 460.0)
_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def pick_bands(bands: int, wavelengths=None) -> list[int]:
    """Band indices shown as R, G, B: nearest to 640/550/460 nm, else spread over the cube."""
    if wavelengths is not None and len(wavelengths) == bands:
        wl = np.asarray(wavelengths, float)
        if np.isfinite(wl).all():
            if wl.max() < 10:  # micrometres
                wl = wl * 1000.0
            if wl.min() <= 560 <= wl.max():
                return [int(np.argmin(np.abs(wl - x))) for x in TARGETS_NM]
    if bands < 3:
        return [0] * 3 if bands == 1 else [1, 0, 0]
    if bands == 3:
        return [0, 1, 2]
    return [int(round((bands - 1) * f)) for f in (0.8, 0.5, 0.15)]


def _as_cube(cube_like, wavelengths, valid):
    """(data (B, H, W), wavelengths, valid) from a Cube or an array."""
    from hsirestore.io.cube import Cube

    from hsirestore.physics.rgb import wavelengths_nm

    if isinstance(cube_like, Cube):
        wl = wavelengths if wavelengths is not None else cube_like.wavelengths
        if wl is not None:  # in nm (micrometres, also unlabelled ones, converted)
            wl = wavelengths_nm(wl, cube_like.wavelength_units if wavelengths is None else None)
        return cube_like.data, wl, (valid if valid is not None else cube_like.valid)
    data = np.asarray(cube_like)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ShapeError(f"a preview needs a (bands, rows, cols) cube; got shape {data.shape}")
    return data, (None if wavelengths is None else wavelengths_nm(wavelengths)), valid


def false_colour(cube: np.ndarray, wavelengths=None, bands=None, valid=None) -> np.ndarray:
    """uint8 (H, W, 3) from a (bands, H, W) array: ``bands`` (three indices shown as R, G, B)
    or :func:`pick_bands`, each stretched between its 2nd and 98th percentile."""
    cube, wavelengths, valid = _as_cube(cube, wavelengths, valid)
    nb = cube.shape[0]
    if bands is None:
        idx = pick_bands(nb, wavelengths)
    else:
        idx = [int(b) for b in bands]
        if len(idx) != 3 or not all(-nb <= b < nb for b in idx):
            raise OptionError(f"preview bands must be three indices in [0, {nb - 1}]; got {list(bands)}")
    rgb = np.stack([cube[i] for i in idx], axis=-1).astype(np.float32)
    ok = np.isfinite(rgb).all(-1)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    vals = rgb[ok]
    out = np.zeros_like(rgb)
    for c in range(3):
        lo, hi = np.percentile(vals[:, c], [2, 98]) if vals.size else (0.0, 1.0)
        if not hi > lo and vals.size:  # a dominant background: stretch to the extremes
            lo, hi = float(vals[:, c].min()), float(vals[:, c].max())
        if hi > lo:
            out[..., c] = (rgb[..., c] - lo) / (hi - lo)
        else:  # a constant channel: mid grey, not the black of invalid pixels
            out[..., c] = 0.5
    out = np.clip(np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0), 0, 1)
    out[~ok] = 0.0
    return (out ** (1 / 1.5) * 255 + 0.5).astype(np.uint8)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    if not hi > lo:
        return np.asarray([lo])
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    ticks = np.round(np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step) / step) * step
    ticks[np.abs(ticks) < step * 1e-9] = 0.0  # no "-0" label
    return ticks


def spectra_plot(cube: np.ndarray, pixels, wavelengths=None, size=(640, 400),
                 valid=None) -> np.ndarray:
    """uint8 (H, W, 3) line plot of the spectra at (row, col) pixels, drawn with Pillow:
    framed axes, ticks with labels on both axes, one coloured line and legend entry per pixel.
    Invalid pixels (``valid`` False, or NaN/Inf) get a legend entry marked "invalid" and no
    line, so they do not set the value axis."""
    from PIL import Image, ImageDraw

    cube, wavelengths, valid = _as_cube(cube, wavelengths, valid)
    bands, rows, cols = cube.shape
    for r, c in pixels:
        if not (0 <= r < rows and 0 <= c < cols):
            raise OptionError(f"pixel ({r}, {c}) is outside the {rows}x{cols} image")
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 60, 20, w - 20, h - 45
    d.rectangle([x0, y0, x1, y1], outline="black")
    xs = (np.asarray(wavelengths, float) if wavelengths is not None
          else np.arange(bands, dtype=float))
    spectra = [cube[:, r, c].astype(np.float64) for r, c in pixels]
    shown = [bool(np.isfinite(sp).all() and (valid is None or valid[r, c]))
             for sp, (r, c) in zip(spectra, pixels)]
    lo = min([0.0] + [float(sp.min()) for sp, ok in zip(spectra, shown) if ok])
    hi = max([0.0] + [float(sp.max()) for sp, ok in zip(spectra, shown) if ok])
    hi = hi if hi > lo else lo + 1.0
    xmin, xmax = float(xs.min()), float(xs.max())
    xspan = xmax - xmin if xmax > xmin else 1.0

    def px(x):
        return x0 + (x - xmin) / xspan * (x1 - x0)

    def py(v):
        return y1 - (v - lo) / (hi - lo) * (y1 - y0)

    for t in _nice_ticks(xmin, xmax):
        d.line([(px(t), y1), (px(t), y1 + 4)], fill="black")
        d.text((px(t) - 12, y1 + 7), f"{t:g}", fill="black")
    for t in _nice_ticks(lo, hi):
        d.line([(x0 - 4, py(t)), (x0, py(t))], fill="black")
        d.line([(x0 + 1, py(t)), (x1 - 1, py(t))], fill="#e6e6e6")
        d.text((4, py(t) - 6), f"{t:.3g}", fill="black")
    for k, s in enumerate(spectra):
        colour = _COLOURS[k % len(_COLOURS)]
        if not shown[k]:
            d.text((x1 - 110, y0 + 5 + 12 * k), f"({pixels[k][0]}, {pixels[k][1]}) invalid", fill=colour)
            continue
        pts = [(px(x), py(v)) for x, v in zip(xs, s)]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        else:
            d.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
        d.text((x1 - 110, y0 + 5 + 12 * k), f"({pixels[k][0]}, {pixels[k][1]})", fill=colour)
    label = "wavelength (nm)" if wavelengths is not None else "band index"
    d.text(((x0 + x1) // 2 - 40, h - 18), label, fill="black")
    return np.asarray(img)


def preview_path(output) -> Path:
    """``<output stem>_preview.png`` beside an output cube (every command's preview name)."""
    output = Path(output)
    return output.with_name(output.stem + "_preview.png")


def spectra_path(out_png) -> Path:
    """``<name>_spectra.png`` beside the false-colour PNG (``<name>.png`` or
    ``<name>_preview.png``)."""
    out_png = Path(out_png)
    stem = out_png.stem[: -len("_preview")] if out_png.stem.endswith("_preview") else out_png.stem
    return out_png.with_name(stem + "_spectra.png")


def write_preview(cube_like, out_png, wavelengths=None, pixels=None, valid=None,
                  force: bool = False, bands=None) -> list[Path]:
    """Write the false-colour PNG of a Cube or (bands, H, W) array, and
    ``<stem>_spectra.png`` when ``pixels`` [(row, col), ...] are given, atomically.
    Returns the written paths."""
    from PIL import Image

    data, wl, valid = _as_cube(cube_like, wavelengths, valid)
    out_png = Path(out_png)
    targets = [out_png] + ([spectra_path(out_png)] if pixels else [])
    img = false_colour(data, wl, bands, valid)
    plot = spectra_plot(data, pixels, wl, valid=valid) if pixels else None
    with atomic_paths(targets, force=force) as tmps:
        Image.fromarray(img).save(tmps[0], format="PNG")
        if plot is not None:
            Image.fromarray(plot).save(tmps[1], format="PNG")
    return targets


def decimated(source, max_side: int = 1024, rows_per_read: int = 64):
    """A Cube of a CubeSource subsampled to at most ``max_side`` pixels on its long side, read
    a strip of rows at a time (for previews of streamed outputs without loading them)."""
    from hsirestore.io.cube import Cube

    bands, rows, cols = (int(v) for v in source.shape)
    step = max(1, -(-max(rows, cols) // max_side))
    keep_rows = np.arange(0, rows, step)
    parts = []
    for r0 in range(0, rows, rows_per_read * step):
        r1 = min(rows, r0 + rows_per_read * step)
        block = np.asarray(source.read_window(r0, r1, 0, cols), np.float32)
        sel = keep_rows[(keep_rows >= r0) & (keep_rows < r1)] - r0
        parts.append(block[:, sel, ::step])
    data = np.concatenate(parts, axis=1)
    meta = getattr(source, "meta", None)
    valid = np.isfinite(data).all(axis=0)
    nodata = getattr(meta, "nodata", None)
    if nodata is not None and np.isfinite(nodata):
        valid &= ~(data == np.float32(nodata)).all(axis=0)
    return Cube(np.where(np.isfinite(data), data, 0), wavelengths=getattr(meta, "wavelengths", None),
                wavelength_units=getattr(meta, "wavelength_units", None),
                valid=None if valid.all() else valid)
