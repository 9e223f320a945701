"""CASSI (coded-aperture snapshot spectral imaging) forward model and its adjoint.

Conventions of the TSA-Net / MST / S2-Transformer line of work: the scene (bands, H, W) is
multiplied by the coded mask (H, W), band k is shifted by ``step * k`` columns (dispersion),
and the shifted bands are summed into one measurement (H, W + step * (bands - 1)).

The functions take numpy arrays or torch tensors with any leading batch dimensions and
return the same type.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hsirestore.errors import ShapeError

if TYPE_CHECKING:
    from hsirestore.io.cube import Cube

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


def check_simulation_options(step: int = 2, crop: int = 0, shot_noise: float = 0.0,
                             seed: int = 0) -> None:
    """OptionError unless step >= 1, crop >= 0, shot_noise >= 0 (finite) and seed >= 0."""
    from hsirestore.errors import OptionError

    if step < 1:
        raise OptionError(f"--step must be >= 1 pixel per band; got {step}")
    if crop < 0:
        raise OptionError(f"--crop must be >= 0 (0: no crop); got {crop}")
    if not (np.isfinite(shot_noise) and shot_noise >= 0):
        raise OptionError(f"--shot-noise must be >= 0 photons (0: noiseless); got {shot_noise:g}")
    if seed < 0:
        raise OptionError(f"--seed must be >= 0; got {seed}")


def simulate_measurement(cube: Cube, mask, step: int = 2, *, to_28: bool = False,
                         crop: int = 0, shot_noise: float = 0.0, seed: int = 0,
                         name: str | None = None, mask_name: str | None = None
                         ) -> tuple[Cube, Cube]:
    """A CASSI snapshot of a Cube, as ``hsirestore simulate-cassi`` makes it.

    cube: Cube (B, H, W) without invalid pixels in the simulated area; mask: (h, w) array or
    a one-plane Cube. ``to_28`` first resamples the bands (wavelengths in nm or um) onto
    :data:`CASSI_WAVELENGTHS_28`, ``crop`` > 0 keeps the central crop x crop pixels;
    ``shot_noise`` > 0 adds Poisson noise with that many photons at value 1 (``seed``).
    ``name``/``mask_name`` label error messages (e.g. the files).
    Returns (measurement Cube (1, h, w + step*(B'-1)), attrs bands/step; the cube it was
    simulated from, (B', h, w) with its wavelengths and moved georeference, attrs noting
    the resampling and crop).
    """
    from hsirestore.errors import InvalidValueError, OptionError
    from hsirestore.io.cube import Cube

    check_simulation_options(step, crop, shot_noise, seed)
    label = name or "the cube"
    if cube.bands < 2:
        raise ShapeError(f"{label}: a CASSI snapshot needs a cube with several bands; got "
                         f"{cube.bands}")
    data, valid, transform = cube.data, cube.valid, cube.transform
    wl, units = cube.wavelengths, cube.wavelength_units
    fwhm, band_names = cube.fwhm, cube.band_names
    attrs: dict = {}
    if crop:  # first: resampling only the crop is cheaper
        _, h, w = data.shape
        if crop > min(h, w):
            raise OptionError(f"--crop {crop} is larger than the cube ({h}x{w})")
        r0, c0 = (h - crop) // 2, (w - crop) // 2
        data = data[:, r0 : r0 + crop, c0 : c0 + crop]
        valid = None if valid is None else valid[r0 : r0 + crop, c0 : c0 + crop]
        if transform is not None:  # move the origin to the crop's top-left pixel
            a, b, x0, d, e, y0 = transform
            transform = (a, b, x0 + a * c0 + b * r0, d, e, y0 + d * c0 + e * r0)
        attrs["crop"] = crop
    if to_28:
        from hsirestore.physics.rgb import wavelengths_nm

        if wl is None:
            raise InvalidValueError(f"{label} has no wavelengths, so --to-28 cannot resample it")
        nm = wavelengths_nm(wl, units)
        lo, hi = CASSI_WAVELENGTHS_28[0], CASSI_WAVELENGTHS_28[-1]
        if nm.min() > lo + 10 or nm.max() < hi - 10:
            raise InvalidValueError(f"{label}: its bands ({nm.min():g}-{nm.max():g} nm) do not "
                                    f"cover the 28 TSA-Net bands ({lo:g}-{hi:g} nm) that --to-28 "
                                    "resamples onto")
        data = interpolate_bands(data, nm, CASSI_WAVELENGTHS_28)
        wl, units, fwhm, band_names = np.asarray(CASSI_WAVELENGTHS_28), "nm", None, None
        attrs["resampled"] = "28 TSA-Net bands"
    if valid is not None and not valid.all():
        raise InvalidValueError(f"{label}: {int((~valid).sum())} invalid (nodata/NaN) pixels "
                                "in the simulated area; a CASSI snapshot mixes neighbouring "
                                "pixels, so crop them away first (--crop)")
    if isinstance(mask, Cube):
        if mask.bands != 1:
            raise ShapeError(f"{mask_name or 'the mask'}: expected a 2-D mask, got {mask.bands} "
                             "planes")
        if mask.valid is not None and not mask.valid.all():  # as the decoder refuses them
            raise InvalidValueError(f"{mask_name or 'the mask'}: {int((~mask.valid).sum())} "
                                    "NaN/Inf/nodata pixels; a coded aperture needs every pixel")
        mask = mask.data[0]
    mask = np.asarray(mask, np.float32)
    if not np.isfinite(mask).all():
        raise InvalidValueError(f"{mask_name or 'the mask'}: {int((~np.isfinite(mask)).sum())} "
                                "NaN/Inf values; a coded aperture needs every pixel")
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ShapeError(f"{mask_name or 'the mask'}: expected a 2-D mask, got shape {mask.shape}")
    if mask.shape != data.shape[1:]:
        raise ShapeError(f"mask {mask.shape[0]}x{mask.shape[1]} does not match the cube's "
                         f"{data.shape[1]}x{data.shape[2]}")
    y = cassi_forward(data, mask, step)
    if shot_noise > 0:
        rng = np.random.default_rng(seed)
        y = (rng.poisson(np.clip(y, 0, None) * shot_noise).astype(np.float32)
             / np.float32(shot_noise))
    meas = Cube(y[None].astype(np.float32), attrs={"bands": data.shape[0], "step": step})
    ref = Cube(np.ascontiguousarray(data, dtype=np.float32), wavelengths=wl,
               wavelength_units=units, fwhm=fwhm, band_names=band_names, nodata=cube.nodata,
               crs=cube.crs, transform=transform, attrs=attrs)
    return meas, ref
