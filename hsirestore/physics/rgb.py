"""Render RGB from a cube through a camera spectral response (numpy only).

Response files: the NTIRE 2022 CSV (columns R, G1, G2, B; greens averaged) and camspec CSVs
(``#`` comment lines, then ``Wavelength[nm],R,G1,G2,B`` or ``...,R,G,B``). Without a file the
built-in response is the CIE 1931 2-degree colour-matching functions (colour-science)
converted to linear sRGB primaries and clipped at 0.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError


def load_camera_response(path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelengths nm (n,), response (3, n)) from a CSV file."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: camera response file not found")
    rows = [r for r in csv.reader(l for l in path.read_text(errors="replace").splitlines()
                                  if l.strip() and not l.lstrip().startswith("#"))]
    if not rows:
        raise FormatError(f"{path}: empty camera response file")
    header = [h.strip().lower() for h in rows[0]]
    try:
        float(header[0])
        header = ["wavelength", "r", "g", "b"][: len(rows[0])]
        body = rows
    except ValueError:
        body = rows[1:]
    try:
        table = np.asarray([[float(v) for v in r[: len(header)]] for r in body if r], np.float64)
    except ValueError as e:
        raise FormatError(f"{path}: non-numeric value in the camera response ({e})") from None

    def col(*names):
        idx = [i for i, h in enumerate(header) if h in names]
        return table[:, idx].mean(axis=1) if idx else None

    wl = table[:, 0]
    r, g, b = col("r", "red"), col("g", "g1", "g2", "green"), col("b", "blue")
    if r is None or g is None or b is None or table.shape[0] < 2:
        raise FormatError(f"{path}: expected columns wavelength, R, G (or G1, G2), B")
    order = np.argsort(wl)
    return wl[order], np.stack([r, g, b])[:, order]


def builtin_response(wavelengths=None) -> tuple[np.ndarray, np.ndarray]:
    """CIE 1931 CMFs mapped to linear sRGB, clipped at 0: (wl (n,), response (3, n))."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour

    cmfs = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]
    wl = np.asarray(cmfs.wavelengths, np.float64)
    xyz = np.asarray(cmfs.values, np.float64)  # (n, 3)
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    return wl, np.clip(xyz @ m.T, 0, None).T


def render_rgb(cube: np.ndarray, wavelengths, response_wl=None, response=None,
               clip: bool = True) -> np.ndarray:
    """(3, H, W) float32: integrate the cube against the response sampled at its bands.

    Normalised so that a perfect white (reflectance 1 in every band) gives 1 in green.
    """
    wl = np.asarray(wavelengths, np.float64)
    if wl.size != cube.shape[0]:
        raise FormatError(f"{wl.size} wavelengths for {cube.shape[0]} bands")
    if response is None:
        response_wl, response = builtin_response()
    resp = np.stack([np.interp(wl, response_wl, r, left=0.0, right=0.0) for r in response])
    if resp[1].sum() <= 0:
        raise FormatError("the camera response has no green sensitivity over the cube's wavelengths")
    resp = resp / resp[1].sum()
    rgb = np.tensordot(resp.astype(np.float32), cube, axes=(1, 0))
    return np.clip(rgb, 0, 1).astype(np.float32) if clip else rgb.astype(np.float32)


def default_camera_path() -> Path | None:
    """The NTIRE 2022 response in ../shared/data when present (it is GPL-3.0 data and is not
    shipped with the package)."""
    from hsirestore.training.cave import shared_data_dir

    p = shared_data_dir() / "camera" / "ntire2022_rgb_qe.csv"
    return p if p.exists() else None
