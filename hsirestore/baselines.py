"""Classical RGB -> HSI baseline: root-polynomial regression (numpy only).

Root-polynomial features of degree d are the d-th roots of the monomials of degree d in
(r, g, b) (Finlayson, Mackiewicz & Hurlbert, "Color correction using root-polynomial
regression", IEEE TIP 24(5), 2015); they scale linearly with exposure, so a photo twice as
bright gives a spectrum twice as bright. A (n_features, bands) matrix maps them to spectra;
it is fitted by ridge regression on (rgb, spectrum) pixel pairs.

Shipped file ``weights/rgb2hsi-poly.npz``: ``coef`` float64 (n_features, 31), ``degree``,
``wavelengths`` (31,), ``ridge``; fitted on the 20 CAVE train scenes rendered through the
NTIRE 2022 camera response (see benchmarks/rgb2hsi_val.py and the manifest entry).
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np

from hsirestore.errors import ModelError, ShapeError

POLY_FILE = "rgb2hsi-poly.npz"


def root_poly_terms(degree: int) -> list[tuple[int, int, int]]:
    """Exponent triples (a, b, c), a + b + c = k, for k = 1..degree, without duplicates of
    lower-degree roots (e.g. sqrt(r^2) = r). Degree 2: 6 terms; degree 3: 13 terms."""
    if degree not in (1, 2, 3, 4):
        raise ModelError(f"root-polynomial degree must be 1..4; got {degree}")
    seen: set[tuple[float, float, float]] = set()
    terms = []
    for k in range(1, degree + 1):
        for e in itertools.product(range(k + 1), repeat=3):
            if sum(e) != k:
                continue
            key = tuple(round(x / k, 6) for x in e)
            if key in seen:
                continue
            seen.add(key)
            terms.append(tuple(e) + (k,))
    return terms  # type: ignore[return-value]


def root_poly_features(rgb: np.ndarray, degree: int) -> np.ndarray:
    """rgb (3, N) >= 0 -> features (n_terms, N) float64; homogeneous of degree 1."""
    rgb = np.clip(np.asarray(rgb, np.float64), 0.0, None)
    if rgb.ndim != 2 or rgb.shape[0] != 3:
        raise ShapeError(f"expected rgb of shape (3, N); got {rgb.shape}")
    out = []
    for a, b, c, k in root_poly_terms(degree):
        if k == 1:
            out.append(rgb[[a, b, c].index(1)])
            continue
        v = np.ones(rgb.shape[1])
        for channel, e in zip(rgb, (a, b, c)):
            if e:  # a factor with exponent 0 is 1, also where the channel is 0
                v = v * channel ** (e / k)
        out.append(v)
    return np.stack(out)


def fit_root_poly(rgb: np.ndarray, spectra: np.ndarray, degree: int = 3,
                  ridge: float = 1e-4) -> np.ndarray:
    """Ridge fit. rgb (3, N), spectra (B, N) -> coef (n_terms, B).

    The penalty is ``ridge * trace(F F^T) / n_terms`` (relative to the feature energy).
    """
    f = root_poly_features(rgb, degree)
    y = np.asarray(spectra, np.float64)
    if y.ndim != 2 or y.shape[1] != f.shape[1]:
        raise ShapeError(f"spectra {y.shape} do not match {f.shape[1]} rgb pixels")
    g = f @ f.T
    lam = ridge * np.trace(g) / g.shape[0]
    return np.linalg.solve(g + lam * np.eye(g.shape[0]), f @ y.T)


def predict_root_poly(rgb: np.ndarray, coef: np.ndarray, degree: int,
                      chunk: int = 1 << 18) -> np.ndarray:
    """rgb (3, H, W) -> spectra (B, H, W) float32, clipped at 0; processed in pixel chunks."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ShapeError(f"expected an RGB image (3, H, W); got shape {rgb.shape}")
    _, h, w = rgb.shape
    flat = rgb.reshape(3, -1)
    out = np.empty((coef.shape[1], flat.shape[1]), np.float32)
    for s in range(0, flat.shape[1], chunk):
        f = root_poly_features(flat[:, s:s + chunk], degree)
        out[:, s:s + chunk] = np.clip(coef.T @ f, 0.0, None)
    return out.reshape(-1, h, w)


class RootPolyModel:
    """A fitted root-polynomial model: ``predict(rgb (3, H, W)) -> (bands, H, W)``."""

    def __init__(self, coef: np.ndarray, degree: int, wavelengths=None, ridge: float | None = None):
        self.coef = np.asarray(coef, np.float64)
        self.degree = int(degree)
        n = len(root_poly_terms(self.degree))
        if self.coef.ndim != 2 or self.coef.shape[0] != n:
            raise ModelError(f"root-polynomial coefficients {self.coef.shape} do not fit degree "
                             f"{self.degree} ({n} terms)")
        self.wavelengths = None if wavelengths is None else np.asarray(wavelengths, np.float64)
        self.ridge = ridge

    @classmethod
    def fit(cls, rgb: np.ndarray, spectra: np.ndarray, degree: int = 3, ridge: float = 1e-4,
            wavelengths=None) -> "RootPolyModel":
        return cls(fit_root_poly(rgb, spectra, degree, ridge), degree, wavelengths, ridge)

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        return predict_root_poly(rgb, self.coef, self.degree)

    def save(self, path: os.PathLike | str, **info) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, coef=self.coef, degree=np.int64(self.degree),
                 wavelengths=np.asarray(self.wavelengths if self.wavelengths is not None else []),
                 ridge=np.float64(self.ridge or 0.0), info=np.asarray(json.dumps(info)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: os.PathLike | str) -> "RootPolyModel":
        path = Path(path)
        if not path.exists():
            raise ModelError(f"baseline file {path} not found")
        if path.suffix.lower() != ".npz":
            raise ModelError(f"{path}: the root-polynomial baseline is an .npz file (from "
                             "benchmarks/rgb2hsi_val.py --fit-poly); model weights go with "
                             "--method mcga")
        try:
            with np.load(path, allow_pickle=False) as z:
                wl = z["wavelengths"]
                return cls(z["coef"], int(z["degree"]), wl if wl.size else None, float(z["ridge"]))
        except (KeyError, ValueError, OSError) as e:
            raise ModelError(f"cannot read baseline file {path}: {e}") from e


def load_shipped_poly() -> RootPolyModel:
    """The shipped baseline, checked against the weights manifest."""
    from hsirestore.weights import shipped_weights_path

    return RootPolyModel.load(shipped_weights_path(POLY_FILE))
