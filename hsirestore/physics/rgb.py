"""Render RGB from a cube through a camera spectral response (numpy only).

Response files (CSV, comma separated):

* NTIRE 2022 (``ntire2022_rgb_qe.csv``): header ``Wavelength[nm],R,G1,G2,B``;
* camspec (Jiang, Gu et al. 2013): ``#`` comment lines, then rows ``wavelength,R,G,B`` or
  ``wavelength,R,G1,G2,B``, with or without a header row.

Two green columns (G1, G2) are averaged. Without a file the built-in response is used: the
CIE 1931 2-degree colour-matching functions (from colour-science) mapped to linear sRGB
primaries (IEC 61966-2-1 matrix) and clipped at 0, i.e. an ideal "sRGB camera". The NTIRE
response is GPL-3.0 data and is never shipped in the package; :func:`default_camera_path`
finds it in the shared data folder when that exists.

Normalisation of :func:`render_rgb`: the response is sampled at the cube's band centres and
scaled so that its green channel sums to 1 over the bands, so a perfect white (reflectance 1
in every band) renders to exactly 1 in green (red and blue keep the camera's raw white
balance). The built-in response is white balanced as well (each channel sums to 1), so a
perfect white renders to (1, 1, 1).
"""
from __future__ import annotations

import csv
import functools
import warnings
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError, ShapeError

__all__ = ["load_camera_response", "builtin_response", "render_rgb", "default_camera_path",
           "sample_response", "wavelengths_nm"]

# XYZ -> linear sRGB (D65), IEC 61966-2-1
XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986],
                        [-0.9689, 1.8758, 0.0415],
                        [0.0557, -0.2040, 1.0570]])


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_camera_response(path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelengths nm (n,) increasing, response (3, n) as R, G, B) from a CSV file.

    FormatError on a missing/unreadable file, missing columns, non-numeric or non-finite
    values, fewer than 2 rows or repeated wavelengths.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: camera response file not found")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise FormatError(f"{path}: cannot read the camera response ({e.strerror or e})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = [[v.strip() for v in r] for r in csv.reader(lines)]
    rows = [[v for v in r if v != ""] for r in rows]
    rows = [r for r in rows if r]
    if not rows:
        raise FormatError(f"{path}: empty camera response file")
    if all(_is_number(v) for v in rows[0]):
        n = len(rows[0])
        if n not in (4, 5):
            raise FormatError(f"{path}: expected columns wavelength, R, G (or G1, G2), B; "
                              f"got {n} columns")
        header = ["wavelength", "r", "g", "b"] if n == 4 else ["wavelength", "r", "g1", "g2", "b"]
        body = rows
    else:
        header = [h.lower().split("[")[0].split("(")[0].strip() for h in rows[0]]
        body = rows[1:]
    if any(len(r) < len(header) for r in body):
        raise FormatError(f"{path}: rows with fewer than the {len(header)} columns of the header")
    try:
        table = np.asarray([[float(v) for v in r[: len(header)]] for r in body], np.float64)
    except ValueError as e:
        raise FormatError(f"{path}: non-numeric value in the camera response ({e})") from None

    def col(*names):
        idx = [i for i, h in enumerate(header) if h in names]
        return table[:, idx].mean(axis=1) if idx else None

    if table.ndim != 2 or table.shape[0] < 2:
        raise FormatError(f"{path}: a camera response needs at least 2 wavelengths")
    wl = col("wavelength", "wavelengths", "wl", "lambda", "nm")
    wl = table[:, 0] if wl is None else wl
    r, g, b = col("r", "red"), col("g", "g1", "g2", "green"), col("b", "blue")
    if r is None or g is None or b is None:
        raise FormatError(f"{path}: expected columns wavelength, R, G (or G1, G2), B; "
                          f"got {', '.join(rows[0])}")
    resp = np.stack([r, g, b])
    if not (np.isfinite(wl).all() and np.isfinite(resp).all()):
        raise FormatError(f"{path}: non-finite value in the camera response")
    order = np.argsort(wl, kind="stable")
    wl, resp = wl[order], resp[:, order]
    if np.any(np.diff(wl) <= 0):
        raise FormatError(f"{path}: repeated wavelength in the camera response")
    if (resp <= 0).all(axis=1).any():
        raise FormatError(f"{path}: a colour channel of the camera response is zero everywhere")
    return wl, resp


@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour

        cmfs = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]
        wl = np.asarray(cmfs.wavelengths, np.float64)
        xyz = np.asarray(cmfs.values, np.float64)  # (n, 3)
    resp = np.clip(xyz @ XYZ_TO_SRGB.T, 0, None).T
    wl.setflags(write=False)
    resp.setflags(write=False)
    return wl, resp


def builtin_response() -> tuple[np.ndarray, np.ndarray]:
    """CIE 1931 2-degree CMFs mapped to linear sRGB, clipped at 0: (wl nm (n,), (3, n))."""
    wl, resp = _builtin()
    return wl.copy(), resp.copy()


def wavelengths_nm(wavelengths, units: str | None = None) -> np.ndarray:
    """Band centres in nm: micrometres (``units`` um/µm/micrometers, or every value < 30 when
    ``units`` is unknown or says nm -- no imaging spectrometer has bands below 30 nm, so such
    values are micrometres mislabelled) are multiplied by 1000."""
    wl = np.asarray(wavelengths, np.float64).reshape(-1)
    u = (units or "").strip().lower()
    if u in ("um", "µm", "micrometer", "micrometers", "micron", "microns") or (
            u in ("", "nm", "nanometer", "nanometers") and wl.size and np.nanmax(wl) < 30):
        wl = wl * 1000.0
    return wl


def sample_response(wavelengths, response_wl=None, response=None) -> np.ndarray:
    """(3, bands) response at the band centres (nm), each band weighted by its width (the
    spacing of the band centres, so that non-uniform grids such as the 28 CASSI bands
    integrate like a dense grid), green summing to 1 (render_rgb's normalisation; the
    built-in response is also white balanced: every channel sums to 1); zero outside the
    response's range."""
    wl = np.asarray(wavelengths, np.float64).reshape(-1)
    if not np.isfinite(wl).all():
        raise FormatError("the cube's wavelengths are not all finite")
    builtin = response is None
    if builtin:
        response_wl, response = _builtin()
    response = np.asarray(response, np.float64)
    if response.ndim != 2 or response.shape[0] != 3:
        raise ShapeError(f"a camera response must be (3, n); got {response.shape}")
    resp = np.stack([np.interp(wl, response_wl, r, left=0.0, right=0.0) for r in response])
    if wl.size > 1:
        order = np.argsort(wl)
        width = np.empty_like(wl)
        width[order] = np.abs(np.gradient(wl[order]))
        resp = resp * width  # band widths (constant on a uniform grid: no effect there)
    if resp[1].sum() <= 0:
        lo, hi = float(np.min(response_wl)), float(np.max(response_wl))
        raise FormatError(f"the camera response ({lo:g}-{hi:g} nm) has no green sensitivity at "
                          f"the cube's wavelengths ({wl.min():g}-{wl.max():g} nm)")
    if builtin and (resp.sum(axis=1) > 0).all():
        return resp / resp.sum(axis=1, keepdims=True)  # white balanced: white -> (1, 1, 1)
    return resp / resp[1].sum()


def render_rgb(cube: np.ndarray, wavelengths, response_wl=None, response=None,
               clip: bool = True) -> np.ndarray:
    """cube (bands, H, W) -> linear RGB (3, H, W) float32.

    ``wavelengths``: band centres in nm (values all < 30 are taken as micrometres).
    ``response_wl``/``response``: (n,) nm and (3, n), e.g. from :func:`load_camera_response`;
    None uses the built-in response: the CIE 1931 colour matching functions through the
    XYZ -> linear sRGB matrix, negative lobes clipped, each channel balanced so that an
    equal-energy white gives (1, 1, 1) -- a display-oriented rendering for previews, not
    colorimetric sRGB (which is D65-balanced). A perfect white maps to 1 in green;
    non-finite values count as 0; ``clip`` clips the result to [0, 1].
    """
    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise ShapeError(f"render_rgb needs a (bands, rows, cols) cube; got shape {cube.shape}")
    wl = wavelengths_nm(wavelengths)
    if wl.size != cube.shape[0]:
        raise ShapeError(f"{wl.size} wavelengths for {cube.shape[0]} bands")
    resp = sample_response(wl, response_wl, response).astype(np.float32)
    data = cube.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    rgb = np.tensordot(resp, data, axes=(1, 0))
    return np.clip(rgb, 0, 1).astype(np.float32) if clip else rgb.astype(np.float32)


def default_camera_path() -> Path | None:
    """The NTIRE 2022 response (``camera/ntire2022_rgb_qe.csv`` in ``$HSIRESTORE_DATA`` or
    ../shared/data) when present, else None (GPL-3.0 data, not shipped with the package)."""
    from hsirestore.paths import shared_data_dir

    p = shared_data_dir() / "camera" / "ntire2022_rgb_qe.csv"
    return p if p.is_file() else None
