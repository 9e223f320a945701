"""Units and scale: map input values to the model's normalised range and back.

Rule (``fit_scaling(..., rule="auto")``), offset is always 0 so the mapping is linear
(an input scaled by s gives a result scaled by s):

* float data whose valid values already lie in [0, 1], or whose 0.1th and 99.9th
  percentiles lie in [-0.5, 1.5] with the 99.9th at least 0.5 ([0, 1] data with noise, e.g.
  sigma 30/255, or specular highlights) -> identity;
* uint8 / int8 data -> divide by the dtype maximum (255 / 127): 8-bit data are display
  referred and use their full range;
* any other data (uint16 counts, reflectance x 10000, radiance, floats outside [0, 1]) ->
  divide by the 99.9th percentile of the valid values, so that a few hot pixels or
  saturated specular highlights do not squash the scene; the percentile is computed over a
  strided subsample of windows (a few million values at most), so it also works on cubes
  streamed from disk;
* a zero percentile (an almost empty image) falls back to the largest magnitude, then to 1.

"auto" is therefore scale-invariant except for the [0, 1] float case; tasks that must be
strictly linear in the input (CASSI) should ask for ``"percentile:99.9"`` or ``"max"``.

Other rules: ``"none"`` (identity), ``"dtype"`` (divide by the integer dtype maximum; floats
are taken as already in [0, 1]), ``"max"`` (the exact maximum of the valid values),
``"percentile:P"`` (0 < P <= 100) and ``"scale:S"`` (divide by S > 0).

Invalid pixels (any band non-finite, or every band equal to the declared nodata value: the
rule of :func:`hsirestore.io.common.valid_mask`) are ignored, and so are single values equal
to nodata in otherwise valid pixels (GDAL's per-value nodata, e.g. one dead band); the
predictor fills those from the neighbouring bands of the same pixel
(:func:`fill_missing_entries`) before the model sees them.
This module never imports torch; ``Scaling`` works on numpy arrays and torch tensors alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hsirestore.errors import InvalidValueError, OptionError
from hsirestore.io.common import bad_bands, equals_nodata  # noqa: F401 (bad_bands re-exported)
from hsirestore.io.cube import ArraySource, Cube
from hsirestore.physics.cassi import _is_torch  # the package's one torch-or-numpy test

__all__ = [
    "Scaling", "fit_scaling", "parse_rule", "invalid_mask", "sample_pixels",
    "missing_entries", "fill_missing_entries", "bad_bands", "fill_bad_bands",
    "band_means", "RULES",
]

RULES = ("auto", "none", "dtype", "max", "percentile:P", "scale:S")
AUTO_PERCENTILE = 99.9
UNIT_LOW, UNIT_HIGH = -0.5, 1.5  # float data whose 0.1/99.9th percentiles lie here are unit data
UNIT_MIN_PEAK = 0.5  # ... provided the 99.9th percentile reaches this (dim data are rescaled)


@dataclass(frozen=True)
class Scaling:
    """model value = (x - offset) / scale; x = model value * scale + offset."""

    offset: float = 0.0
    scale: float = 1.0
    rule: str = "none"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidValueError(f"scaling factor must be finite and > 0; got {self.scale}")
        if not math.isfinite(self.offset):
            raise InvalidValueError(f"scaling offset must be finite; got {self.offset}")

    @property
    def is_identity(self) -> bool:
        return self.offset == 0.0 and self.scale == 1.0

    def to_model(self, x: Any) -> Any:
        """Input units -> normalised (numpy: float32 result; torch: same dtype)."""
        x = _as_float(x)
        if self.is_identity:
            return x
        if self.offset != 0.0:
            x = x - self.offset
        return x * (1.0 / self.scale) if _is_torch(x) else x / np.float32(self.scale)

    def from_model(self, y: Any) -> Any:
        """Normalised -> input units."""
        y = _as_float(y)
        if self.is_identity:
            return y
        y = y * (self.scale if _is_torch(y) else np.float32(self.scale))
        if self.offset != 0.0:
            y = y + self.offset
        return y

    def describe(self) -> str:
        return f"{self.rule}: x / {self.scale:.6g}" + (f" - {self.offset:.6g}" if self.offset else "")


def _as_float(x: Any) -> Any:
    if _is_torch(x):
        return x if x.is_floating_point() else x.float()
    x = np.asarray(x)
    if x.dtype != np.float32 and x.dtype != np.float64:
        x = x.astype(np.float32)
    return x


def parse_rule(rule: str) -> tuple[str, float | None]:
    """"percentile:99.5" -> ("percentile", 99.5); "auto" -> ("auto", None)."""
    if not isinstance(rule, str) or not rule.strip():
        raise OptionError(f"unknown scaling rule {rule!r}; use one of {', '.join(RULES)}")
    name, _, arg = rule.strip().lower().partition(":")
    if name in ("auto", "none", "dtype", "max"):
        if arg:
            raise OptionError(f"scaling rule {name!r} takes no argument; got {rule!r}")
        return name, None
    if name in ("percentile", "scale"):
        try:
            value = float(arg)
        except ValueError:
            raise OptionError(f"scaling rule {rule!r} needs a number, e.g. {name}:"
                              f"{'99.9' if name == 'percentile' else '10000'}") from None
        if name == "percentile" and not (0 < value <= 100):
            raise OptionError(f"percentile must be in (0, 100]; got {value:g}")
        if name == "scale" and not (math.isfinite(value) and value > 0):
            raise OptionError(f"scale must be a finite number > 0; got {arg}")
        return name, value
    raise OptionError(f"unknown scaling rule {rule!r}; use one of {', '.join(RULES)}")


def invalid_mask(block: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """bool (h, w): True where a pixel of ``block`` (bands, h, w) is invalid: any band
    non-finite, or every band equal to ``nodata`` (the rule of io.common.valid_mask)."""
    bad = ~np.isfinite(block).all(axis=0)
    eq = equals_nodata(block, nodata)
    if eq is not None:
        bad |= eq.all(axis=0)
    return bad


def missing_entries(block: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """bool (bands, h, w): single values equal to ``nodata`` in pixels that are otherwise
    valid (some band differs from nodata, every band finite); None when there are none."""
    eq = equals_nodata(block, nodata)
    if eq is None:
        return None
    eq &= ~invalid_mask(block, nodata)[None]
    return eq if eq.any() else None


def fill_missing_entries(block: np.ndarray, missing: np.ndarray) -> None:
    """Fill, in place, the ``missing`` values (bool, shape of ``block`` (bands, h, w)) of
    pixels that have at least one valid band: linear interpolation between the nearest valid
    bands of the same pixel, the nearest valid band's value beyond the first/last one."""
    cols = missing.any(axis=0) & ~missing.all(axis=0)
    if not cols.any():
        return
    v = block[:, cols].astype(np.float64)  # (bands, n)
    m = missing[:, cols]
    nb = v.shape[0]
    idx = np.broadcast_to(np.arange(nb)[:, None], v.shape)
    prev = np.maximum.accumulate(np.where(m, -1, idx), axis=0)
    nxt = np.minimum.accumulate(np.where(m, nb, idx)[::-1], axis=0)[::-1]
    lo = np.where(prev < 0, nxt, prev)
    hi = np.where(nxt >= nb, prev, nxt)
    vlo = np.take_along_axis(v, lo, axis=0)
    vhi = np.take_along_axis(v, hi, axis=0)
    t = np.where(hi > lo, (idx - lo) / np.maximum(hi - lo, 1), 0.0)
    v = np.where(m, vlo + t * (vhi - vlo), v)
    block[:, cols] = v.astype(block.dtype)


def _as_source(data: Any):
    """(source, valid mask, dtype name, nodata) for an array, Cube or CubeSource."""
    if isinstance(data, Cube):
        return ArraySource(data), data.valid, data.source_dtype, data.nodata
    if hasattr(data, "read_window") and hasattr(data, "shape"):
        meta = getattr(data, "meta", None)
        return data, None, getattr(meta, "source_dtype", None), getattr(meta, "nodata", None)
    arr = np.asarray(data)
    dtype = arr.dtype.name
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InvalidValueError(f"expected a (bands, rows, cols) array; got shape {arr.shape}")
    return _RawSource(arr), None, dtype, None


class _RawSource:
    """Window reader over an array of any dtype (no float32 copy of the whole array)."""

    def __init__(self, arr: np.ndarray):
        self.arr = arr
        self.shape = tuple(int(s) for s in arr.shape)

    def read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.arr[:, r0:r1, c0:c1]


def sample_pixels(data: Any, max_values: int = 4_000_000, window: int = 32) -> np.ndarray:
    """Valid pixels from a strided subsample of windows: float array (bands, n).

    ``data``: array (bands, rows, cols) of any dtype, Cube, or CubeSource. Reads every pixel
    when the cube holds at most ``max_values`` values, else an even grid of window x window
    blocks totalling about ``max_values`` values.
    """
    src, valid, _, nodata = _as_source(data)
    bands, rows, cols = src.shape
    per_band = max(window * window, max_values // max(bands, 1))
    if rows * cols <= per_band:
        wins = [(0, rows, 0, cols)]
    else:
        nwin = max(1, per_band // (window * window))
        gr = max(1, min(rows // window or 1, int(round(math.sqrt(nwin * rows / cols))) or 1))
        gc = max(1, min(cols // window or 1, nwin // gr))
        rs = np.linspace(0, max(rows - window, 0), gr).round().astype(int)
        cs = np.linspace(0, max(cols - window, 0), gc).round().astype(int)
        wins = [(int(r), min(int(r) + window, rows), int(c), min(int(c) + window, cols))
                for r in rs for c in cs]
    parts = []
    for r0, r1, c0, c1 in wins:
        block = np.asarray(src.read_window(r0, r1, c0, c1))
        bad = invalid_mask(block, nodata)
        if valid is not None:
            bad |= ~valid[r0:r1, c0:c1]
        px = block.reshape(bands, -1)[:, ~bad.reshape(-1)]
        eq = equals_nodata(px, nodata)
        if eq is not None and eq.any():  # single nodata values of valid pixels: NaN
            px = px.astype(np.float64)
            px[eq] = np.nan
        parts.append(px)
    return np.concatenate(parts, axis=1) if parts else np.zeros((bands, 0))


def band_means(data: Any, max_values: int = 4_000_000) -> np.ndarray:
    """Per-band mean of valid values over a subsample, float32 (bands,); 0 where none."""
    px = sample_pixels(data, max_values).astype(np.float64)
    ok = np.isfinite(px)
    n = ok.sum(axis=1)
    total = np.where(ok, px, 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), 0.0).astype(np.float32)


def _exact_max(src, valid, nodata) -> float:
    bands, rows, cols = src.shape
    step = max(1, 8_000_000 // max(bands * cols, 1))
    best = -math.inf
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        block = np.asarray(src.read_window(r0, r1, 0, cols))
        bad = invalid_mask(block, nodata)
        if valid is not None:
            bad |= ~valid[r0:r1]
        px = block[:, ~bad]
        eq = equals_nodata(px, nodata)
        if eq is not None:
            px = px[~eq]
        if px.size:
            best = max(best, float(px.max()))
    return best


def fit_scaling(data_or_source: Any, rule: str = "auto", source_dtype: str | None = None) -> Scaling:
    """Choose the Scaling for an input (array of any dtype, Cube, or CubeSource).

    ``source_dtype`` (e.g. "uint16") names the dtype the values came from when the data
    are already float32 (as Cubes and sources are); it defaults to the Cube's/source's
    ``source_dtype`` or the array's dtype. See the module docstring for the rules.
    """
    name, arg = parse_rule(rule)
    if name == "none":
        return Scaling(0.0, 1.0, "none")
    if name == "scale":
        return Scaling(0.0, float(arg), f"scale:{arg:g}")
    src, valid, dtype, nodata = _as_source(data_or_source)
    dtype = source_dtype or dtype or "float32"
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise OptionError(f"unknown data type {dtype!r}") from None
    if name == "dtype":
        if dt.kind in "ui":
            return Scaling(0.0, float(np.iinfo(dt).max), "dtype")
        if dt.kind == "b":
            return Scaling(0.0, 1.0, "dtype")
        return Scaling(0.0, 1.0, "dtype")
    if name == "max":
        m = _exact_max(src, valid, nodata)
        return Scaling(0.0, _positive(m, None), "max")
    if name == "auto" and dt.kind in "ui" and dt.itemsize == 1:
        return Scaling(0.0, float(np.iinfo(dt).max), "auto:dtype")
    px = sample_pixels(data_or_source).astype(np.float64, copy=False).reshape(-1)
    px = px[np.isfinite(px)]
    if px.size == 0:
        return Scaling(0.0, 1.0, f"{name}:empty")
    if name == "auto":
        if dt.kind == "f" and (px.min() >= 0.0 and px.max() <= 1.0 or _unit_like(px)):
            return Scaling(0.0, 1.0, "auto:unit")
        p = AUTO_PERCENTILE
        label = f"auto:percentile:{p:g}"
    else:
        p = float(arg)
        label = f"percentile:{p:g}"
    value = float(np.percentile(px, p))
    return Scaling(0.0, _positive(value, float(np.abs(px).max())), label)


def _unit_like(px: np.ndarray) -> bool:
    """[0, 1] data with noise or highlights: 0.1th and 99.9th percentiles within
    [UNIT_LOW, UNIT_HIGH] and a 99.9th percentile of at least UNIT_MIN_PEAK (e.g. a
    reflectance cube with sigma = 30/255 Gaussian noise; not dim dark-subtracted radiance)."""
    lo, hi = np.percentile(px, [100 - AUTO_PERCENTILE, AUTO_PERCENTILE])
    return bool(lo >= UNIT_LOW and UNIT_MIN_PEAK <= hi <= UNIT_HIGH)


def _positive(value: float, fallback: float | None) -> float:
    for v in (value, fallback):
        if v is not None and math.isfinite(v) and v > 0:
            return float(v)
    return 1.0


def fill_bad_bands(block: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """A copy of ``block`` (bands, h, w) whose ``bad`` bands are linear interpolations of the
    nearest good bands on either side (the nearest good band beyond the ends)."""
    out = np.array(block, dtype=np.float32, copy=True)
    good = np.flatnonzero(~bad)
    for b in np.flatnonzero(bad):
        lo, hi = good[good < b], good[good > b]
        if lo.size and hi.size:
            lo, hi = lo[-1], hi[0]
            t = np.float32((b - lo) / (hi - lo))
            out[b] = (1 - t) * out[lo] + t * out[hi]
        else:
            out[b] = out[lo[-1] if lo.size else hi[0]]
    return out
