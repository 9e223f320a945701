"""Image-quality metrics on numpy cubes (bands, rows, cols); conventions stated in CONVENTIONS.

All functions take an optional ``valid`` (rows, cols) bool mask; invalid pixels are left out
(SSIM is computed on the full band and averaged over valid pixels of the SSIM map).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

CONVENTIONS = {
    "psnr": "MPSNR: PSNR per band with peak = data_range, then the mean over bands (dB)",
    "psnr_global": "global PSNR: one MSE over the whole cube, peak = data_range (NTIRE convention, dB)",
    "ssim": "MSSIM: SSIM per band (Gaussian window sigma 1.5, truncated at 3.5 sigma, K1 0.01, "
            "K2 0.03, population covariance; as skimage with gaussian_weights=True, "
            "use_sample_covariance=False), then the mean over bands",
    "sam": "SAM: mean spectral angle between predicted and reference spectra, in degrees; "
           "pixels where either spectrum is all zero are left out",
    "ergas": "ERGAS = 100 * ratio * sqrt(mean over bands of (RMSE_b / mean_b)^2), ratio = 1 for "
             "same-resolution restoration; bands with zero reference mean are left out",
    "rmse": "RMSE over all valid values",
    "mrae": "MRAE (NTIRE): mean of |pred - ref| / ref over values with ref > 1e-3 "
            "(smaller references are left out to avoid division by ~0)",
}


def _check(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs reference {ref.shape}")
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
    return pred, ref


def _vals(x: np.ndarray, valid) -> np.ndarray:
    """(bands, n_valid) values."""
    return x.reshape(x.shape[0], -1) if valid is None else x[:, valid]


def psnr_per_band(pred, ref, data_range: float = 1.0, valid=None) -> np.ndarray:
    pred, ref = _check(pred, ref)
    mse = ((_vals(pred, valid) - _vals(ref, valid)) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / mse)


def mpsnr(pred, ref, data_range: float = 1.0, valid=None) -> float:
    return float(np.mean(psnr_per_band(pred, ref, data_range, valid)))


def psnr_global(pred, ref, data_range: float = 1.0, valid=None) -> float:
    pred, ref = _check(pred, ref)
    mse = float(((_vals(pred, valid) - _vals(ref, valid)) ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim_per_band(pred, ref, data_range: float = 1.0, valid=None) -> np.ndarray:
    pred, ref = _check(pred, ref)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = []
    for p, r in zip(pred, ref):
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
        mp, mr = f(p), f(r)
        spp = f(p * p) - mp * mp
        srr = f(r * r) - mr * mr
        spr = f(p * r) - mp * mr
        smap = ((2 * mp * mr + c1) * (2 * spr + c2)) / ((mp**2 + mr**2 + c1) * (spp + srr + c2))
        # skimage crops the border of half the window before averaging
        pad = 5
        if valid is not None:
            m = valid.copy()
        else:
            m = np.ones(p.shape, bool)
        if min(p.shape) > 2 * pad:
            inner = np.zeros_like(m)
            inner[pad:-pad, pad:-pad] = True
            m &= inner
        out.append(float(smap[m].mean()) if m.any() else float(smap.mean()))
    return np.asarray(out)


def mssim(pred, ref, data_range: float = 1.0, valid=None) -> float:
    return float(np.mean(ssim_per_band(pred, ref, data_range, valid)))


def sam_deg(pred, ref, valid=None) -> float:
    pred, ref = _check(pred, ref)
    p, r = _vals(pred, valid), _vals(ref, valid)
    num = (p * r).sum(0)
    den = np.linalg.norm(p, axis=0) * np.linalg.norm(r, axis=0)
    ok = den > 0
    if not ok.any():
        return float("nan")
    cos = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def rmse(pred, ref, valid=None) -> float:
    pred, ref = _check(pred, ref)
    return float(np.sqrt(((_vals(pred, valid) - _vals(ref, valid)) ** 2).mean()))


def ergas(pred, ref, ratio: float = 1.0, valid=None) -> float:
    pred, ref = _check(pred, ref)
    p, r = _vals(pred, valid), _vals(ref, valid)
    band_rmse = np.sqrt(((p - r) ** 2).mean(1))
    mean = r.mean(1)
    ok = mean != 0
    return float(100 * ratio * np.sqrt(np.mean((band_rmse[ok] / mean[ok]) ** 2)))


def mrae(pred, ref, valid=None, eps: float = 1e-3) -> float:
    pred, ref = _check(pred, ref)
    p, r = _vals(pred, valid), _vals(ref, valid)
    ok = r > eps
    return float((np.abs(p[ok] - r[ok]) / r[ok]).mean())


def compute_metrics(pred, ref, valid=None, data_range: float = 1.0) -> dict:
    """All metrics plus per-band PSNR/SSIM/RMSE arrays (as lists)."""
    pred, ref = _check(pred, ref)
    pb = psnr_per_band(pred, ref, data_range, valid)
    sb = ssim_per_band(pred, ref, data_range, valid)
    rb = np.sqrt(((_vals(pred, valid) - _vals(ref, valid)) ** 2).mean(1))
    return {
        "mpsnr": float(np.mean(pb)),
        "psnr_global": psnr_global(pred, ref, data_range, valid),
        "mssim": float(np.mean(sb)),
        "sam_deg": sam_deg(pred, ref, valid),
        "ergas": ergas(pred, ref, 1.0, valid),
        "rmse": rmse(pred, ref, valid),
        "mrae": mrae(pred, ref, valid),
        "per_band": {"psnr": pb.tolist(), "ssim": sb.tolist(), "rmse": rb.tolist()},
        "data_range": data_range,
    }
