"""Degrade a cube as ``hsirestore degrade`` does: normalise, degrade (physics), map back.

It lives in the inference layer because it needs the input normalisation and the
missing-value rules (:mod:`hsirestore.inference.normalize`) around the degradation
simulator (:mod:`hsirestore.physics.degradations`); it imports no torch.
"""
from __future__ import annotations

import numpy as np

from hsirestore.io.cube import Cube
from hsirestore.physics.degradations import Degradation, jsonable_info, parse_degradation


def degrade_cube(cube: Cube, spec: str | Degradation, seed=0, scaling: str = "auto",
                 name: str | None = None) -> tuple[Cube, dict]:
    """Degrade a Cube (bands, H, W) in any units as ``hsirestore degrade`` does:
    -> (Cube on the input's scale, record).

    The data are normalised (:func:`hsirestore.inference.normalize.fit_scaling` with
    ``scaling``; RGB images, read already divided by 255/65535, as the floats they are),
    degraded by ``spec`` with ``seed``, and mapped back. Invalid pixels (NaN/nodata, or
    ``cube.valid`` False) and single nodata values are filled for the degradation (so that
    blurs do not spread them) and put back as read. When the input held integer counts
    (:func:`hsirestore.io.counts_dtype`) the result is rounded and clipped to that type's
    range (still float32). The record (JSON-able: spec, steps with the parameters drawn,
    mask fractions, seed, normalisation) is also stored as JSON in the output's
    ``attrs["degradation"]``. ``name`` labels error messages (e.g. the file).
    InvalidValueError when no pixel is valid.
    """
    import json

    from hsirestore.errors import InvalidValueError
    from hsirestore.inference.normalize import (fill_missing_entries, fit_scaling, invalid_mask,
                                                missing_entries)  # (no torch)
    from hsirestore.io import counts_dtype

    deg = spec if isinstance(spec, Degradation) else parse_degradation(spec)
    bad = invalid_mask(cube.data, cube.nodata)
    if cube.valid is not None:
        bad |= ~cube.valid
    if bad.all():
        raise InvalidValueError(f"{name + ': ' if name else ''}no valid pixel (every pixel is "
                                "NaN or nodata)")
    norm = fit_scaling(cube, scaling, cube.source_dtype)
    x = norm.to_model(cube.data)
    # nodata must not leak into valid pixels through blurs and resampling: degrade a copy
    # whose holes are filled (single nodata values from the pixel's other bands, invalid
    # pixels with the band means), then put the holes back as read
    holes = missing_entries(cube.data, cube.nodata)
    xin = x
    if holes is not None or bad.any():
        xin = x.copy()
        if holes is not None:
            holes &= ~bad[None]
            fill_missing_entries(xin, holes)
        xin[:, bad] = xin[:, ~bad].mean(axis=1, keepdims=True)
    y, info = deg.apply(xin, seed)
    y[:, bad] = x[:, bad]  # invalid pixels and single nodata values stay as read
    if holes is not None:
        y[holes] = x[holes]
    record = {**jsonable_info(info), "seed": seed, "normalisation": norm.describe()}
    out = cube.with_data(np.asarray(norm.from_model(y), np.float32))
    out.attrs = {**cube.attrs, "degradation": json.dumps(record)}
    counts = None if "band_scales" in cube.attrs else counts_dtype(cube, cube.data[:, ::7, ::7])
    if counts is not None:  # integer counts in, integer counts out
        lim = np.iinfo(counts)
        out.data = np.clip(np.rint(out.data), lim.min, lim.max).astype(np.float32)
    return out, record
