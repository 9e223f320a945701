"""Quick looks (numpy + Pillow): a false-colour PNG and a spectra plot at chosen pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsirestore.io.atomic import atomic_paths

TARGETS_NM = (640.0, 550.0, 460.0)


def pick_bands(bands: int, wavelengths=None) -> list[int]:
    """Band indices shown as R, G, B: nearest to 640/550/460 nm, else spread over the cube."""
    if wavelengths is not None and len(wavelengths) == bands:
        wl = np.asarray(wavelengths, float)
        if wl.min() <= 560 <= wl.max() or wl.max() < 10:  # nm, or micrometres
            t = np.asarray(TARGETS_NM) / (1000.0 if wl.max() < 10 else 1.0)
            return [int(np.argmin(np.abs(wl - x))) for x in t]
    if bands < 3:
        return [0] * 3
    return [int(round(bands * f)) for f in (0.8, 0.5, 0.15)]


def false_colour(cube: np.ndarray, wavelengths=None, valid=None) -> np.ndarray:
    """uint8 (H, W, 3): chosen bands with a 2-98 percentile stretch per channel."""
    idx = pick_bands(cube.shape[0], wavelengths)
    rgb = np.stack([cube[i] for i in idx], axis=-1).astype(np.float32)
    vals = rgb[valid] if valid is not None else rgb.reshape(-1, 3)
    out = np.zeros_like(rgb)
    for c in range(3):
        v = vals[:, c][np.isfinite(vals[:, c])]
        lo, hi = (np.percentile(v, [2, 98]) if v.size else (0.0, 1.0))
        out[..., c] = (rgb[..., c] - lo) / (hi - lo if hi > lo else 1.0)
    return (np.clip(np.nan_to_num(out), 0, 1) ** (1 / 1.5) * 255 + 0.5).astype(np.uint8)


def spectra_plot(cube: np.ndarray, pixels, wavelengths=None, size=(640, 400)) -> np.ndarray:
    """uint8 (H, W, 3) line plot of the spectra at (row, col) pixels, drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 50, 20, w - 20, h - 40
    d.rectangle([x0, y0, x1, y1], outline="black")
    bands = cube.shape[0]
    xs = np.asarray(wavelengths, float) if wavelengths is not None else np.arange(bands, dtype=float)
    spectra = [cube[:, r, c] for r, c in pixels]
    top = max(float(np.nanmax(s)) for s in spectra) if spectra else 1.0
    top = top if top > 0 else 1.0
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    span = xs.max() - xs.min() if bands > 1 else 1.0
    for k, s in enumerate(spectra):
        pts = [(x0 + (x - xs.min()) / span * (x1 - x0), y1 - float(v) / top * (y1 - y0))
               for x, v in zip(xs, np.nan_to_num(s))]
        d.line(pts, fill=colours[k % len(colours)], width=2)
        d.text((x1 - 120, y0 + 5 + 12 * k), f"({pixels[k][0]}, {pixels[k][1]})", fill=colours[k % len(colours)])
    for t in np.linspace(xs.min(), xs.max(), 5):
        px = x0 + (t - xs.min()) / span * (x1 - x0)
        d.line([(px, y1), (px, y1 + 4)], fill="black")
        d.text((px - 12, y1 + 8), f"{t:.0f}", fill="black")
    d.text((x0 - 45, y0), f"{top:.3g}", fill="black")
    d.text((x0 - 20, y1 - 8), "0", fill="black")
    d.text(((x0 + x1) // 2 - 40, h - 18), "wavelength" if wavelengths is not None else "band", fill="black")
    return np.asarray(img)


def write_preview(cube: np.ndarray, out_png, wavelengths=None, pixels=None, valid=None,
                  force: bool = False) -> list[Path]:
    """Write the false-colour PNG (and ``<stem>_spectra.png`` when pixels are given)."""
    from PIL import Image

    out_png = Path(out_png)
    targets = [out_png]
    if pixels:
        targets.append(out_png.with_name(out_png.stem + "_spectra.png"))
    with atomic_paths(targets, force=force) as tmps:
        Image.fromarray(false_colour(cube, wavelengths, valid)).save(tmps[0], format="PNG")
        if pixels:
            Image.fromarray(spectra_plot(cube, pixels, wavelengths)).save(tmps[1], format="PNG")
    return targets
