"""CASSI (coded-aperture snapshot spectral imaging) forward model and its adjoint.

Conventions of the TSA-Net / MST / S2-Transformer line of work: the scene (bands, H, W) is
multiplied by the coded mask (H, W), band k is shifted by ``step * k`` columns (dispersion),
and the shifted bands are summed into one measurement (H, W + step * (bands - 1)).

The functions take numpy arrays or torch tensors with any leading batch dimensions and
return the same type.
"""
from __future__ import annotations

import numpy as np

from hsirestore.errors import ShapeError

#: Band centres (nm) of the TSA-Net CASSI system (28 bands), as published with its data.
CASSI_WAVELENGTHS_28 = (
    453.3, 457.6, 462.1, 466.8, 471.6, 476.5, 481.6, 486.9, 492.4, 498.0, 503.9, 509.9,
    516.2, 522.7, 529.5, 536.5, 543.8, 551.4, 558.6, 567.5, 575.3, 584.3, 594.4, 604.2,
    614.4, 625.1, 636.3, 648.1,
)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _zeros(like, shape):
    if _is_torch(like):
        import torch

        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return np.zeros(shape, dtype=like.dtype)


_INDEX_CACHE: dict = {}


def _column_index(bands: int, w: int, step: int, device):
    """Measurement column of (band k, scene column j), flattened k-major: (bands * w,)."""
    key = (bands, w, step, str(device))
    if key not in _INDEX_CACHE:
        import torch

        idx = (torch.arange(bands)[:, None] * step + torch.arange(w)[None, :]).reshape(-1)
        _INDEX_CACHE[key] = idx.to(device)
    return _INDEX_CACHE[key]


def measurement_width(width: int, bands: int, step: int) -> int:
    return width + step * (bands - 1)


def check_geometry(meas_shape, mask_shape, bands: int, step: int) -> None:
    """Raise ShapeError unless a (H, W) mask and measurement fit ``bands`` and ``step``."""
    if len(mask_shape) != 2:
        raise ShapeError(f"the mask must be 2-D (rows x cols); got shape {tuple(mask_shape)}")
    if len(meas_shape) != 2:
        raise ShapeError(f"the measurement must be 2-D (rows x cols); got shape {tuple(meas_shape)}")
    h, w = mask_shape
    expected = (h, measurement_width(w, bands, step))
    if tuple(meas_shape) != expected:
        raise ShapeError(
            f"measurement {meas_shape[0]}x{meas_shape[1]} does not fit mask {h}x{w} with "
            f"{bands} bands at step {step}: expected {expected[0]}x{expected[1]}"
        )


def cassi_forward(x, mask, step: int = 2):
    """y = sum_k shift(mask * x_k, step * k).  x (..., B, H, W), mask (H, W) -> y (..., H, W')."""
    *lead, bands, h, w = x.shape
    y = _zeros(x, (*lead, h, measurement_width(w, bands, step)))
    coded = x * mask
    for k in range(bands):  # (slice adds measured faster than one index_add_ on the CPU)
        y[..., :, step * k : step * k + w] += coded[..., k, :, :]
    return y


def shift_back(y, bands: int, step: int = 2):
    """Band k = y[..., step*k : step*k + W].  y (..., H, W') -> (..., B, H, W)."""
    w = y.shape[-1] - step * (bands - 1)
    if w <= 0:
        raise ShapeError(f"measurement width {y.shape[-1]} too small for {bands} bands at step {step}")
    if _is_torch(y):  # one gather instead of a loop over bands
        g = y.index_select(-1, _column_index(bands, w, step, y.device))
        return g.reshape(*y.shape[:-1], bands, w).movedim(-2, -3)
    parts = [y[..., :, step * k : step * k + w] for k in range(bands)]
    return np.stack(parts, axis=-3)


def cassi_adjoint(y, mask, bands: int, step: int = 2):
    """A^T y = mask * shift_back(y).  y (..., H, W') -> (..., B, H, W)."""
    return shift_back(y, bands, step) * mask


def mask_phi_sum(mask, bands: int, step: int = 2):
    """diag(A A^T): sum_k shift(mask^2, step*k).  mask (..., H, W) -> (..., H, W'). Used by GAP."""
    if _is_torch(mask):
        import torch

        stack = (mask * mask).unsqueeze(-3).expand(*mask.shape[:-2], bands, *mask.shape[-2:])
        return cassi_forward(stack, torch.ones((), dtype=mask.dtype, device=mask.device), step)
    stack = np.broadcast_to((mask * mask)[..., None, :, :], (*mask.shape[:-2], bands, *mask.shape[-2:]))
    return cassi_forward(stack, np.ones((), dtype=mask.dtype), step)


def interpolate_bands(cube: np.ndarray, wl_from, wl_to) -> np.ndarray:
    """Linear interpolation along bands: (B, H, W) at wl_from -> (len(wl_to), H, W); the
    bands may come in any order (they are sorted by wavelength first); outside wl_from's
    range the nearest band is repeated."""
    wl_from = np.asarray(wl_from, np.float64)
    wl_to = np.asarray(wl_to, np.float64)
    if np.any(np.diff(wl_from) <= 0):
        order = np.argsort(wl_from, kind="stable")
        wl_from, cube = wl_from[order], cube[order]
        if np.any(np.diff(wl_from) == 0):
            from hsirestore.errors import ShapeError

            raise ShapeError("two bands have the same wavelength; cannot interpolate between them")
    idx = np.clip(np.searchsorted(wl_from, wl_to) - 1, 0, len(wl_from) - 2)
    t = np.clip((wl_to - wl_from[idx]) / (wl_from[idx + 1] - wl_from[idx]), 0.0, 1.0)
    t = t.astype(cube.dtype)[:, None, None]
    return cube[idx] * (1 - t) + cube[idx + 1] * t


def mean_intensities(y, mask, bands: int):
    """Per-measurement :func:`mean_intensity`: y (..., H, W'), mask (..., H, W) -> (...),
    summed in float64 and returned in y's dtype; all-zero masks give 0 rather than an error."""
    if _is_torch(y):
        import torch

        num = y.sum((-2, -1), dtype=torch.float64)
        den = bands * mask.sum((-2, -1), dtype=torch.float64)
        return (num / den.clamp_min(1e-12)).to(y.dtype)
    num = y.sum((-2, -1), dtype=np.float64)
    den = bands * mask.sum((-2, -1), dtype=np.float64)
    return (num / np.maximum(den, 1e-12)).astype(y.dtype)


def mean_intensity(y, mask, bands: int) -> float:
    """Estimate of the scene's mean value from a measurement: sum(y) / (bands * sum(mask)).

    Exact when the scene is uncorrelated with the mask; linear in y, so decoders that divide
    by it and multiply back are homogeneous of degree 1 (a scaled measurement decodes to a
    scaled cube).
    """
    total = float(y.sum())
    msum = float(mask.sum())
    if msum <= 0:
        raise ShapeError("the mask is all zero: nothing reaches the detector")
    return total / (bands * msum)


def model_input(y, mask, bands: int, step: int = 2):
    """The S2-Transformer input: shift_back(y * 2 / bands) * mask, (..., bands, H, W)."""
    return shift_back(y * (2.0 / bands), bands, step) * mask
