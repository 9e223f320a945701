"""Compare two cubes as ``hsirestore evaluate`` does: which pixels count, and what to warn
about, around :func:`hsirestore.metrics.compute_metrics` (numpy only)."""
from __future__ import annotations

import numpy as np

from hsirestore.errors import InvalidValueError, ShapeError
from hsirestore.io.common import equals_nodata
from hsirestore.io.cube import Cube
from hsirestore.metrics.core import compute_metrics


def compare_cubes(pred: Cube, ref: Cube, data_range: float = 1.0,
                  ergas_ratio: float = 1.0) -> tuple[dict, list[str]]:
    """(metrics of :func:`compute_metrics`, notes) for two Cubes of the same shape.

    Pixels invalid in either cube (``valid`` False: NaN/Inf, or nodata in every band) are
    left out, and so are pixels where a single band holds the cube's nodata value (a missing
    value: one -9999 would dominate RMSE, global PSNR and ERGAS). ``notes`` are one-line
    warnings: different wavelengths (bands are compared by index), pixels left out for a
    missing value, a reference above ``data_range``, cubes of different scales.
    ShapeError for different shapes, InvalidValueError when no pixel is valid in both.
    """
    from hsirestore.physics.rgb import wavelengths_nm

    if pred.shape != ref.shape:
        raise ShapeError(f"prediction {'x'.join(map(str, pred.shape))} and reference "
                         f"{'x'.join(map(str, ref.shape))} (bands x rows x cols) differ in shape")
    notes: list[str] = []
    if (pred.wavelengths is not None and ref.wavelengths is not None
            and not np.allclose(wavelengths_nm(pred.wavelengths, pred.wavelength_units),
                                wavelengths_nm(ref.wavelengths, ref.wavelength_units),
                                rtol=1e-3, atol=0.5)):
        notes.append("the two cubes have different wavelengths; bands are compared by index")
    valid = None
    for v in (pred.valid, ref.valid):
        if v is not None:
            valid = v.copy() if valid is None else (valid & v)
    holes = np.zeros(pred.shape[1:], bool)
    for c in (pred, ref):
        eq = equals_nodata(c.data, c.nodata)
        if eq is not None:
            holes |= eq.any(axis=0)
    if valid is not None:
        holes &= valid  # only pixels that are otherwise valid
    if holes.any():
        valid = ~holes if valid is None else (valid & ~holes)
        notes.append(f"{int(holes.sum())} pixel(s) with a missing value (nodata in some bands) "
                     "left out")
    if valid is not None and not valid.any():
        raise InvalidValueError("no pixel is valid in both cubes")
    ref_vals = ref.data if valid is None else ref.data[:, valid]
    top = float(np.max(ref_vals)) if ref_vals.size else 0.0
    if top > 1.5 * data_range:
        notes.append(f"reference values reach {top:g}, above --data-range {data_range:g}; "
                     "PSNR/SSIM assume that peak")
    pred_vals = pred.data if valid is None else pred.data[:, valid]
    pm, rm = float(np.mean(np.abs(pred_vals))), float(np.mean(np.abs(ref_vals)))
    if min(pm, rm) > 0 and max(pm, rm) / min(pm, rm) > 10:
        notes.append(f"the two cubes differ in scale (mean |value| {pm:g} vs {rm:g} in the "
                     "reference): bring them to the same units first (e.g. reflectance x 10000 "
                     "vs [0, 1])")
    metrics = compute_metrics(pred.data, ref.data, valid=valid, data_range=data_range,
                              ergas_ratio=ergas_ratio)
    return metrics, notes
