"""Tile grids, blend weights and padding: pure numpy maths (no torch).

The tile grid is the product of two 1-D grids (:func:`axis_profiles`): along each axis,
tiles of length ``min(tile, n)`` whose starts are spread evenly between 0 and ``n - tile`` so
that neighbours overlap by at least ``overlap`` pixels; the first tile starts at 0 and the
last one is flush with the border.

Blending: tile (rows i, cols j) is weighted by the outer product of its two 1-D profiles
(raised-cosine ramps of length ``overlap`` towards neighbours, exactly 1 elsewhere, no taper
at image borders); accumulating ``w * tile`` and dividing by the accumulated weight (the
outer product of the two :func:`axis_weight_sum`) reproduces an identity model exactly.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from hsirestore.errors import OptionError

__all__ = [
    "axis_starts", "ramp_profile", "axis_profiles", "axis_weight_sum", "pad_to_multiple",
    "reflect_pad",
]


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    vals = tuple(int(x) for x in v)
    if len(vals) != 2:
        raise OptionError(f"{name} must be an integer or a pair of integers; got {v!r}")
    return vals  # type: ignore[return-value]


def axis_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis of length ``n`` (tiles of length ``min(tile, n)``)."""
    n, tile, overlap = int(n), int(tile), int(overlap)
    if n < 1:
        raise OptionError(f"cannot tile an axis of length {n}")
    if tile < 1:
        raise OptionError(f"tile size must be at least 1; got {tile}")
    if overlap < 0:
        raise OptionError(f"tile overlap must be >= 0; got {overlap}")
    if overlap >= tile:
        raise OptionError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
    if n <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((n - overlap) / stride)
    count = max(count, 2)
    span = n - tile
    starts = sorted({int(round(k * span / (count - 1))) for k in range(count)})
    return starts


def ramp_profile(n: int, lead: int, trail: int) -> np.ndarray:
    """1-D weights (float64, length n): raised-cosine rise over ``lead`` samples, fall over
    ``trail`` samples, 1 in between. Every weight is > 0."""
    p = np.ones(int(n), np.float64)
    for length, flip in ((int(lead), False), (int(trail), True)):
        length = min(length, int(n))
        if length <= 0:
            continue
        i = np.arange(length, dtype=np.float64)
        ramp = 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / length)
        if flip:
            p[n - length:] *= ramp[::-1]
        else:
            p[:length] *= ramp
    return p


def axis_profiles(n: int, tile: int, overlap: int) -> list[tuple[int, int, np.ndarray]]:
    """(start, stop, profile float64) per tile along one axis, ramps only towards neighbours."""
    starts = axis_starts(n, tile, overlap)
    t = min(int(tile), int(n))
    out = []
    for k, s in enumerate(starts):
        lead = overlap if k > 0 else 0
        trail = overlap if k < len(starts) - 1 else 0
        out.append((s, s + t, ramp_profile(t, lead, trail)))
    return out


def axis_weight_sum(n: int, tile: int, overlap: int) -> np.ndarray:
    """Sum of the 1-D profiles over the tiles of one axis, float64 (n,); all > 0."""
    total = np.zeros(int(n), np.float64)
    for s, e, p in axis_profiles(n, tile, overlap):
        total[s:e] += p
    return total


def pad_to_multiple(shape: Sequence[int], multiple: int | Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Bottom/right padding that brings the last two dims of ``shape`` to multiples.

    Returns ((0, pad_rows), (0, pad_cols)).
    """
    mh, mw = _pair(multiple, "multiple")
    if mh < 1 or mw < 1:
        raise OptionError(f"size multiple must be >= 1; got {multiple!r}")
    h, w = int(shape[-2]), int(shape[-1])
    return (0, (-h) % mh), (0, (-w) % mw)


def reflect_pad(x: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Pad the last two axes of ``x`` by reflection (mirror without repeating the edge);
    falls back to symmetric/edge padding when an axis is too short to reflect."""
    (pt, pb), (pl, pr) = pads
    if not (pt or pb or pl or pr):
        return x
    out = x
    for axis, (a, b) in ((x.ndim - 2, (pt, pb)), (x.ndim - 1, (pl, pr))):
        if not (a or b):
            continue
        width = [(0, 0)] * x.ndim
        width[axis] = (a, b)
        n = out.shape[axis]
        if n > max(a, b):
            out = np.pad(out, width, mode="reflect")
        elif n > 1:
            # repeated mirroring for pads longer than the axis
            while a > 0 or b > 0:
                n = out.shape[axis]
                step = [(0, 0)] * x.ndim
                sa, sb = min(a, n - 1), min(b, n - 1)
                step[axis] = (sa, sb)
                out = np.pad(out, step, mode="reflect")
                a, b = a - sa, b - sb
        else:
            out = np.pad(out, width, mode="edge")
    return out
