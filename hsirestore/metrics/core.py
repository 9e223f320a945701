"""Image-quality metrics on numpy cubes (bands, rows, cols); conventions stated in CONVENTIONS.

Every function takes ``pred`` and ``ref`` of the same shape (bands, rows, cols) (a 2-D
(rows, cols) image counts as one band) and an optional ``valid`` (rows, cols) bool mask.
Pixels that are invalid, or non-finite in any band of either cube, are left out of every
metric. SSIM is computed on whole bands (invalid pixels filled with 0 in both cubes) and its
map is averaged over valid pixels whose 11x11 window holds only valid pixels (over all valid
pixels when there are none such). Shapes that differ raise ShapeError.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, gaussian_filter

from hsirestore.errors import InvalidValueError, ShapeError

__all__ = ["CONVENTIONS", "psnr_per_band", "mpsnr", "psnr_global", "ssim_per_band", "mssim",
           "sam_deg", "ergas", "rmse", "rmse_per_band", "mrae", "compute_metrics",
           "SSIM_SIGMA", "SSIM_TRUNCATE", "MRAE_EPS"]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5 -> 11x11 window, as skimage
SSIM_K1, SSIM_K2 = 0.01, 0.03
MRAE_EPS = 1e-3  # times the data range
PSNR_CAP_DB = 100.0  # per-band PSNR cap inside the MPSNR mean (an exact band is +inf)

CONVENTIONS = {
    "psnr": "MPSNR: PSNR per band, 10 log10(data_range^2 / MSE_band), then the mean over bands "
            "(dB); a band with zero error has infinite PSNR (so listed per band) and counts as "
            "100 dB in the mean, so that one exact band does not make MPSNR infinite",
    "psnr_global": "global PSNR: one MSE over the whole cube, peak = data_range (NTIRE convention, dB)",
    "ssim": "MSSIM: SSIM per band (Gaussian window sigma 1.5, 11x11, K1 0.01, K2 0.03, "
            "C = (K * data_range)^2, population covariance, reflect padding, 5-px border left "
            "out; as skimage structural_similarity with gaussian_weights=True, "
            "use_sample_covariance=False), then the mean over bands",
    "sam": "SAM: mean spectral angle between predicted and reference spectra, in degrees; "
           "pixels whose reference spectrum is all zero are left out, an all-zero prediction "
           "of a non-zero reference counts as 90 degrees",
    "ergas": "ERGAS = 100 * ratio * sqrt(mean over bands of (RMSE_b / mean_b(ref))^2), ratio = 1 "
             "for same-resolution restoration; bands with zero reference mean are left out",
    "rmse": "RMSE: root of the mean squared error over all valid values (same units as the data)",
    "mrae": "MRAE (NTIRE): mean of |pred - ref| / ref over values with ref > 1e-3 x data_range; "
            "smaller (zero or negative) references are left out to avoid division by ~0",
    "valid": "pixels outside the valid mask or non-finite in any band of either cube are left "
             "out of every metric",
}


def _check(pred, ref, valid=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """float64 (bands, rows, cols) copies and the combined valid mask (None: all valid)."""
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ShapeError(f"shape mismatch: prediction {pred.shape} vs reference {ref.shape}")
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
    if pred.ndim != 3:
        raise ShapeError(f"metrics need (bands, rows, cols) arrays; got shape {pred.shape}")
    mask = None
    if valid is not None:
        mask = np.asarray(valid, dtype=bool)
        if mask.shape != pred.shape[1:]:
            raise ShapeError(f"valid mask shape {mask.shape} != image shape {pred.shape[1:]}")
    finite = np.isfinite(pred).all(0) & np.isfinite(ref).all(0)
    if not finite.all():
        mask = finite if mask is None else (mask & finite)
    return pred, ref, mask


def _vals(x: np.ndarray, valid) -> np.ndarray:
    """(bands, n_valid) values."""
    return x.reshape(x.shape[0], -1) if valid is None else x[:, valid]


def _range(data_range: float) -> float:
    data_range = float(data_range)
    if not (np.isfinite(data_range) and data_range > 0):
        raise InvalidValueError(f"data range must be finite and > 0; got {data_range}")
    return data_range


def _band_mse(pred, ref, valid) -> np.ndarray:
    p, r = _vals(pred, valid), _vals(ref, valid)
    if p.shape[1] == 0:
        return np.full(p.shape[0], np.nan)
    return ((p - r) ** 2).mean(axis=1)


def psnr_per_band(pred, ref, data_range: float = 1.0, valid=None) -> np.ndarray:
    """(bands,) PSNR in dB with peak ``data_range``; inf where a band is exact."""
    data_range = _range(data_range)
    pred, ref, valid = _check(pred, ref, valid)
    mse = _band_mse(pred, ref, valid)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / mse)


def mpsnr(pred, ref, data_range: float = 1.0, valid=None) -> float:
    """Mean over bands of :func:`psnr_per_band` (dB), each capped at PSNR_CAP_DB (an exact
    band would make the mean +inf however poor the other bands are); +inf only when every
    band is exact."""
    return _capped_mean(psnr_per_band(pred, ref, data_range, valid))


def _capped_mean(pb: np.ndarray) -> float:
    if np.all(np.isposinf(pb)):
        return float("inf")
    return float(np.mean(np.minimum(pb, PSNR_CAP_DB)))


def psnr_global(pred, ref, data_range: float = 1.0, valid=None) -> float:
    """NTIRE PSNR: one MSE over every valid value of the cube (dB)."""
    data_range = _range(data_range)
    pred, ref, valid = _check(pred, ref, valid)
    mse = float(np.mean(_band_mse(pred, ref, valid)))  # equal pixel counts per band
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def _ssim_map(p: np.ndarray, r: np.ndarray, data_range: float) -> np.ndarray:
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2

    def f(z):
        return gaussian_filter(z, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    mp, mr = f(p), f(r)
    spp = f(p * p) - mp * mp
    srr = f(r * r) - mr * mr
    spr = f(p * r) - mp * mr
    return ((2 * mp * mr + c1) * (2 * spr + c2)) / ((mp**2 + mr**2 + c1) * (spp + srr + c2))


def ssim_per_band(pred, ref, data_range: float = 1.0, valid=None) -> np.ndarray:
    """(bands,) SSIM (see CONVENTIONS['ssim'])."""
    data_range = _range(data_range)
    pred, ref, valid = _check(pred, ref, valid)
    _, h, w = pred.shape
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    m = np.ones((h, w), bool)
    if min(h, w) > 2 * radius:  # skimage leaves out a border of half the window
        inner = np.zeros_like(m)
        inner[radius:-radius, radius:-radius] = True
        m &= inner
    if valid is not None:
        pred, ref = pred.copy(), ref.copy()
        pred[:, ~valid] = 0.0
        ref[:, ~valid] = 0.0
        full = binary_erosion(valid, np.ones((2 * radius + 1,) * 2, bool), border_value=1)
        m = (m & full) if (m & full).any() else (valid & m if (valid & m).any() else valid)
    if not m.any():
        return np.full(pred.shape[0], np.nan)
    return np.asarray([float(_ssim_map(p, r, data_range)[m].mean()) for p, r in zip(pred, ref)])


def mssim(pred, ref, data_range: float = 1.0, valid=None) -> float:
    """Mean over bands of :func:`ssim_per_band`."""
    return float(np.mean(ssim_per_band(pred, ref, data_range, valid)))


def sam_deg(pred, ref, valid=None) -> float:
    """Mean spectral angle (degrees). Pixels whose reference spectrum is all zero are left
    out (NaN when no pixel is left); an all-zero prediction of a non-zero reference has no
    direction and counts as 90 degrees (leaving it out would reward predicting zeros)."""
    pred, ref, valid = _check(pred, ref, valid)
    p, r = _vals(pred, valid), _vals(ref, valid)
    rn = np.linalg.norm(r, axis=0)
    ok = rn > 0
    if not ok.any():
        return float("nan")
    p, r, rn = p[:, ok], r[:, ok], rn[ok]
    pn = np.linalg.norm(p, axis=0)
    cos = np.zeros_like(rn)
    nz = pn > 0
    cos[nz] = np.clip((p[:, nz] * r[:, nz]).sum(0) / (pn[nz] * rn[nz]), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def rmse_per_band(pred, ref, valid=None) -> np.ndarray:
    """(bands,) root mean squared error per band."""
    pred, ref, valid = _check(pred, ref, valid)
    return np.sqrt(_band_mse(pred, ref, valid))


def rmse(pred, ref, valid=None) -> float:
    """Root mean squared error over all valid values."""
    pred, ref, valid = _check(pred, ref, valid)
    return float(np.sqrt(np.mean(_band_mse(pred, ref, valid))))


def ergas(pred, ref, ratio: float = 1.0, valid=None) -> float:
    """ERGAS (see CONVENTIONS['ergas']); ``ratio`` is the resolution ratio (1: restoration)."""
    pred, ref, valid = _check(pred, ref, valid)
    band_rmse = np.sqrt(_band_mse(pred, ref, valid))
    mean = _vals(ref, valid).mean(1) if _vals(ref, valid).shape[1] else np.zeros(ref.shape[0])
    ok = mean != 0
    if not ok.any():
        return float("nan")
    return float(100 * ratio * np.sqrt(np.mean((band_rmse[ok] / mean[ok]) ** 2)))


def mrae(pred, ref, valid=None, eps: float = MRAE_EPS) -> float:
    """NTIRE MRAE over values with ref > eps (NaN when there are none); ``eps`` is in data
    units (compute_metrics passes MRAE_EPS x data_range)."""
    pred, ref, valid = _check(pred, ref, valid)
    p, r = _vals(pred, valid), _vals(ref, valid)
    ok = r > eps
    if not ok.any():
        return float("nan")
    return float((np.abs(p[ok] - r[ok]) / r[ok]).mean())


def compute_metrics(pred, ref, valid=None, data_range: float = 1.0,
                    ergas_ratio: float = 1.0) -> dict:
    """All metrics: {"mpsnr", "psnr_global", "mssim", "sam_deg", "ergas", "rmse", "mrae"}
    (floats), "per_band": {"psnr", "ssim", "rmse"} (lists, one value per band),
    "data_range", "valid_pixels" and "bands". ``ergas_ratio``: the resolution ratio of
    ERGAS (1 for restoration, 1/s for x s super-resolution)."""
    data_range = _range(data_range)
    if not (np.isfinite(ergas_ratio) and ergas_ratio > 0):
        raise InvalidValueError(f"the ERGAS resolution ratio must be > 0; got {ergas_ratio}")
    pred, ref, valid = _check(pred, ref, valid)
    pb = psnr_per_band(pred, ref, data_range, valid)
    sb = ssim_per_band(pred, ref, data_range, valid)
    rb = rmse_per_band(pred, ref, valid)
    n_valid = int(pred.shape[1] * pred.shape[2] if valid is None else valid.sum())
    return {
        "mpsnr": _capped_mean(pb),
        "psnr_global": psnr_global(pred, ref, data_range, valid),
        "mssim": float(np.mean(sb)),
        "sam_deg": sam_deg(pred, ref, valid),
        "ergas": ergas(pred, ref, ergas_ratio, valid),
        "rmse": rmse(pred, ref, valid),
        "mrae": mrae(pred, ref, valid, eps=MRAE_EPS * data_range),
        "per_band": {"psnr": pb.tolist(), "ssim": sb.tolist(), "rmse": rb.tolist()},
        "data_range": data_range,
        "valid_pixels": n_valid,
        "bands": int(pred.shape[0]),
    }
