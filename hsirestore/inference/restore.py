"""All-in-one restoration predictor (HSI-VAR) for cubes of any band count.

Pipeline: the input is normalised (:func:`hsirestore.inference.normalize.fit_scaling`, rule
"auto" by default: floats in [0, 1] -- or noisy [0, 1] data whose 0.1th/99.9th percentiles
lie in [-0.5, 1.5] -- as they are, 8-bit by 255, anything else by its 99.9th percentile), cut into overlapping spatial tiles (raised-cosine blending, reflect padding to
the model's size multiple, :class:`~hsirestore.inference.engine.TiledPredictor`), restored and
mapped back to the input's scale (writers cast back to the input's dtype on request).

Band count: the model works on 31-band groups.

* B == 31: one group.
* B > 31: sliding windows of 31 bands with ``group_overlap`` bands in common (the last window
  is aligned with the last band); each window is restored on its own and the results are
  blended along the spectral axis with linear ramps over the overlaps (partition of unity,
  accumulated in float64). Every band is kept, in order; an identity model reproduces the
  input exactly.
* 8 <= B < 31: the spectrum is resampled (linear interpolation over band index) to 31
  bands, restored, and resampled back to the B original positions (not exactly invertible).
* B < 8: refused (ShapeError): too few bands for a spectral model (use an RGB/grayscale
  restorer instead).

Degradation (DAG guidance): an explicit spec (``blur+noise``; parameters are accepted and
validated but the model is guided by the types only), "generic" (the base embedding alone),
or "auto": the noise level is estimated per band as 1.4826 * MAD of the diagonal Haar
detail coefficients ((a - b - c + d) / 2 of 2x2 blocks, a unit-gain high-pass) on the
normalised data, leaving out blocks with clipped values (see :func:`estimate_noise`); a median over bands above 3/255 selects "noise" ("niid-noise" when the
90th/10th percentile ratio of the band levels exceeds 2), bands that are entirely zero in a
non-empty cube add "band-missing", scattered all-zero pixels "inpaint". When "auto" finds
nothing (a clean cube: noise below 3/255, no missing bands or pixels) the input is returned
unchanged, because the model would only add its own error (a clean CAVE crop came out at
28 dB); name a degradation (or "generic") to run the model anyway. What was chosen is in
``Restorer.last_info`` (``"degradation": "none"``, ``"unchanged": True`` for a clean cube).

Observed values (data consistency): for completion tasks the missing entries are exact zeros
(``inpaint``: every band of a pixel; ``band-missing``: a whole band; ``deadlines``: a
column of a band) and the other entries are observed without error, so with
``keep_observed="auto"`` (the default) a restoration whose degradation types are all
completion types returns the input wherever it is non-zero and the model's estimate at the
zeros only. Any other type (noise, blur, stripes, ...) makes the observed values
themselves corrupted, and the model output is returned everywhere. "on"/"off" force it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hsirestore.errors import InvalidValueError, OptionError, ShapeError
from hsirestore.inference.normalize import bad_bands, fill_bad_bands
from hsirestore.io.common import equals_nodata
from hsirestore.io.cube import Cube, CubeSink, CubeSource

GROUP = 31
MIN_BANDS = 8
DEFAULT_MODEL = "hsivar-compact"
NOISE_THRESHOLD_255 = 3.0
#: degradation types whose observed entries are exact (missing entries are zeros)
COMPLETION_TYPES = frozenset({"inpaint", "band-missing", "deadlines"})
KEEP_OBSERVED = ("auto", "on", "off")


# ------------------------------------------------------------------ degradation types
def degradation_types() -> tuple[str, ...]:
    from hsirestore.physics.degradations import DEGRADATION_TYPES

    return tuple(DEGRADATION_TYPES)


def types_vector(names) -> np.ndarray:
    """Degradation type names -> 0/1 float32 vector over DEGRADATION_TYPES (T,)."""
    types = degradation_types()
    v = np.zeros(len(types), np.float32)
    for n in names:
        if n not in types:
            raise OptionError(f"unknown degradation {n!r}; valid: {', '.join(types)}")
        v[types.index(n)] = 1.0
    return v


def estimate_noise(x: np.ndarray, max_side: int = 512) -> np.ndarray:
    """Per-band Gaussian noise sigma of x (B, H, W) (same units as x): 1.4826 * MAD of the
    diagonal Haar detail of a central window of at most ``max_side`` pixels. 2x2 blocks
    touching the band's exact minimum or maximum (clipped or saturated values, which
    hide the noise) are left out when at least 5 % of the blocks remain."""
    b, h, w = x.shape
    r0, c0 = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    x = np.asarray(x[:, r0:r0 + max_side, c0:c0 + max_side], np.float64)
    h2, w2 = (x.shape[1] // 2) * 2, (x.shape[2] // 2) * 2
    if h2 == 0 or w2 == 0:
        return np.zeros(b)
    x = x[:, :h2, :w2]
    blocks = (x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2])
    hh = (blocks[0] - blocks[1] - blocks[2] + blocks[3]) / 2
    out = np.zeros(b)
    for i in range(b):
        band = x[i][np.isfinite(x[i])]
        if band.size == 0:
            continue
        lo, hi = band.min(), band.max()
        v = hh[i]
        keep = np.isfinite(v)
        inner = keep.copy()
        for blk in blocks:
            inner &= (blk[i] > lo) & (blk[i] < hi)
        if inner.sum() >= 0.05 * keep.size:
            keep = inner
        v = v[keep]
        if v.size:
            out[i] = 1.4826 * np.median(np.abs(v - np.median(v)))
    return out


def auto_degradation(xn: np.ndarray) -> tuple[list[str], dict]:
    """Choose DAG types for normalised data (B, H, W); returns (names, info).

    Noise: the median per-band sigma of :func:`estimate_noise` (>= NOISE_THRESHOLD_255/255);
    band-missing: some bands entirely zero; inpaint: at least 5 % of the pixels zero in every
    band, scattered (most of them next to an observed pixel, unlike a blank border); the
    holes are left out of the noise estimate."""
    finite = np.where(np.isfinite(xn), xn, 0.0)
    holes = _scattered_holes(xn)  # invalid (NaN) pixels are not holes to inpaint
    sig = estimate_noise(np.where(holes, np.nan, xn) if holes is not None else xn) * 255.0
    band_max = np.abs(finite).reshape(xn.shape[0], -1).max(1)
    missing = bool((band_max == 0).any() and (band_max > 0).any())
    live = sig[band_max > 0] if (band_max > 0).any() else sig
    med = float(np.median(live))
    names: list[str] = []
    if med >= NOISE_THRESHOLD_255:
        p10, p90 = np.percentile(live, [10, 90])
        names.append("niid-noise" if p90 > 2.0 * max(p10, 1e-6) else "noise")
    if missing:
        names.append("band-missing")
    if holes is not None:
        names.append("inpaint")
    # "none" (the cube is returned unchanged) only when the sample was good enough to judge:
    # with under a quarter of its pixels valid (a nodata centre, say) the base model runs
    judged = float(np.isfinite(xn).all(axis=0).mean()) >= 0.25
    info = {"degradation": "+".join(names) or ("none" if judged else "generic"), "estimated": True,
            "sigma_255": round(med, 2), "sigma_255_range": [round(float(live.min()), 2),
                                                              round(float(live.max()), 2)]}
    if missing:
        info["missing_bands"] = [int(i) for i in np.flatnonzero(band_max == 0)]
    if holes is not None:
        info["missing_pixels"] = round(float(holes.mean()), 4)
    return names, info


def _copy_stream(source: CubeSource, sink: CubeSink, pixels: int = 1 << 22) -> None:
    """Copy a source into a sink of the same shape in row strips (about ``pixels`` values)."""
    b, h, w = (int(s) for s in source.shape)
    step = max(1, pixels // max(1, b * w))
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        sink.write_window(r0, 0, np.asarray(source.read_window(r0, r1, 0, w), np.float32))


def _nothing_to_do(info: dict) -> bool:
    """Whether ``auto`` found no degradation (the cube is returned unchanged)."""
    return bool(info.get("estimated")) and info.get("degradation") == "none"


def _scattered_holes(x: np.ndarray) -> np.ndarray | None:
    """bool (H, W) of pixels zero in every band of x (B, H, W) when they look like missing
    pixels to inpaint: 5-98 % of the image, and over 30 % of them next to an observed pixel
    (a blank border or a masked-out block is one region, mostly away from observed pixels)."""
    zero = ~np.any(x != 0, axis=0)
    frac = float(zero.mean())
    if not 0.05 <= frac <= 0.98:
        return None
    obs = ~zero
    near = np.zeros_like(zero)
    near[1:] |= obs[:-1]
    near[:-1] |= obs[1:]
    near[:, 1:] |= obs[:, :-1]
    near[:, :-1] |= obs[:, 1:]
    return zero if (zero & near).sum() > 0.3 * zero.sum() else None


# ------------------------------------------------------------------ band grouping
def band_groups(bands: int, group: int = GROUP, overlap: int = 8) -> list[tuple[int, int]]:
    """Windows [(start, stop)] of ``group`` bands covering 0..bands-1 with >= ``overlap``
    bands shared by neighbours; one window (0, bands) when bands <= group."""
    if bands <= group:
        return [(0, bands)]
    if not 0 <= overlap < group:
        raise OptionError(f"band-group overlap must be in [0, {group - 1}]; got {overlap}")
    stride = group - overlap
    starts = list(range(0, bands - group + 1, stride))
    if starts[-1] != bands - group:
        starts.append(bands - group)
    return [(s, s + group) for s in starts]


def band_weights(groups: list[tuple[int, int]], bands: int) -> list[np.ndarray]:
    """Per-group float64 weights that sum to 1 at every band: linear ramps across each
    overlap (a band shared by two windows weighs more in the one it is deeper inside)."""
    raw = []
    for i, (s, e) in enumerate(groups):
        w = np.ones(e - s)
        if i > 0:
            ov = groups[i - 1][1] - s
            if ov > 0:
                w[:ov] = np.minimum(w[:ov], (np.arange(ov) + 1) / (ov + 1))
        if i < len(groups) - 1:
            ov = e - groups[i + 1][0]
            if ov > 0:
                w[e - s - ov:] = np.minimum(w[e - s - ov:], (ov - np.arange(ov)) / (ov + 1))
        raw.append(w)
    total = np.zeros(bands)
    for (s, e), w in zip(groups, raw):
        total[s:e] += w
    return [w / total[s:e] for (s, e), w in zip(groups, raw)]


def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation matrix over band index (end points aligned)."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    hi = np.clip(lo + 1, 0, n_in - 1)
    t = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - t
    m[np.arange(n_out), hi] += t
    return m


def grouped(net: Callable[[torch.Tensor], torch.Tensor], bands: int, group: int = GROUP,
            overlap: int = 8) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``net`` ((N, group, h, w) -> same) into a function on (N, bands, h, w)."""
    if bands < MIN_BANDS:
        raise ShapeError(f"the restoration model needs at least {MIN_BANDS} bands; this cube has "
                         f"{bands}")
    if bands < group:
        up = torch.from_numpy(resample_matrix(bands, group)).float()
        down = torch.from_numpy(resample_matrix(group, bands)).float()

        def fn_small(x: torch.Tensor) -> torch.Tensor:
            u, d = up.to(x.device, x.dtype), down.to(x.device, x.dtype)
            y = net(torch.einsum("gb,nbhw->nghw", u, x))
            return torch.einsum("bg,nghw->nbhw", d, y.to(x.dtype))

        return fn_small
    groups = band_groups(bands, group, overlap)
    weights = band_weights(groups, bands)

    def fn(x: torch.Tensor) -> torch.Tensor:
        if len(groups) == 1:
            return net(x)
        acc = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
        for (s, e), w in zip(groups, weights):
            y = net(x[:, s:e].contiguous()).to(torch.float64)
            acc[:, s:e] += y * torch.from_numpy(w).to(x.device)[None, :, None, None]
        return acc.to(x.dtype)

    return fn


# ------------------------------------------------------------------ predictor
class Restorer:
    """Restore degraded cubes with HSI-VAR.

    Args:
        model_name: registered restoration model (default "hsivar-compact").
        weights: checkpoint (safetensors export or a training last.pt); None: the shipped
            file of the model (ModelError when it is missing). A file that records its
            preset is built as that preset, whatever ``model_name`` says.
        device: auto | cpu | cuda | cuda:N.   amp: none | bf16 | fp16 | auto (CUDA only).
        tile, overlap: spatial tiling (pixels); tile None runs the whole image at once.
        temperature, top_k, seed: token sampling (temperature 0: deterministic argmax).
        group_overlap: bands shared by neighbouring 31-band groups (B > 31).
        scaling: normalisation rule (see hsirestore.inference.normalize).
        keep_observed: auto | on | off: return the input's non-zero entries unchanged (see
            the module docstring; auto: when every degradation type is a completion type).
        ensemble: average the model over 4 flipped copies of each tile
            (:func:`hsirestore.inference.ensemble.flip_ensemble`; 4x the time).
        net: a stand-in ``(x (N, 31, h, w), types (N, T)) -> (N, 31, h, w)`` instead of a
            model (testing); ``model_name``/``weights`` are then ignored.
    """

    def __init__(self, model_name: str | None = None, weights: str | Path | None = None,
                 device: str = "auto", tile: int | None = 128, overlap: int = 16,
                 amp: str = "auto", temperature: float = 0.0, top_k: int | None = None,
                 seed: int | None = None, group_overlap: int = 8, scaling: str = "auto",
                 batch_size: int = 1, progress: bool = False, net: Callable | None = None,
                 keep_observed: str = "auto", ensemble: bool = False):
        from hsirestore.inference.device import resolve_device
        from hsirestore.inference.normalize import parse_rule

        if not (np.isfinite(temperature) and temperature >= 0):
            raise OptionError(f"--temperature must be a number >= 0; got {temperature}")
        if seed is not None and seed < 0:
            raise OptionError(f"--seed must be >= 0; got {seed}")
        if top_k is not None and top_k < 1:
            raise OptionError(f"--top-k must be >= 1; got {top_k}")
        if tile is not None and tile < 8:
            raise OptionError(f"--tile must be at least 8 (the largest HSI-VAR downsampling; or 0 "
                              f"for the whole image); got {tile}")
        if not 0 <= group_overlap < GROUP:
            raise OptionError(f"band-group overlap must be in [0, {GROUP - 1}]; got {group_overlap}")
        parse_rule(scaling)
        if keep_observed not in KEEP_OBSERVED:
            raise OptionError(f"--keep-observed must be one of {', '.join(KEEP_OBSERVED)}; "
                              f"got {keep_observed!r}")
        self.keep_observed = keep_observed
        self.ensemble = bool(ensemble)
        self.model_name = model_name or DEFAULT_MODEL
        self.notes: list[str] = []  # warnings about the weights (e.g. --model not used)
        self.device = resolve_device(device)
        self.tile, self.overlap, self.amp = tile, overlap, amp
        if tile is not None and overlap >= tile:
            raise OptionError(f"tile overlap {overlap} must be smaller than the tile {tile}")
        self.temperature, self.top_k, self.seed = float(temperature), top_k, seed
        self.group_overlap, self.scaling, self.batch_size, self.progress = (
            group_overlap, scaling, batch_size, progress)
        self.multiple = 1
        self.weights_path: Path | None = None
        self.last_info: dict = {}
        if net is not None:
            self.model, self.net = None, net
        else:
            self.model = self._load(model_name, weights)
            self.net = None

    def _load(self, name: str | None, weights):
        """The model on the device, via :func:`hsirestore.weights.load_checkpoint` (a file
        that records its preset is built as that preset); sets ``model_name``,
        ``weights_path`` and the tile ``multiple``."""
        from hsirestore.weights import load_model

        model, ck = load_model(weights, "restore", name, DEFAULT_MODEL)
        self.model_name, self.weights_path = ck.name, ck.path
        self.notes += [ck.note] if ck.note else []
        self.multiple = model.size_multiple
        return model.to(self.device)

    def describe(self) -> str:
        ens = " + flip ensemble" if self.ensemble else ""
        if self.model is None:
            return "stand-in" + ens
        return f"{self.model_name} ({self.weights_path.name if self.weights_path else '?'})" + ens

    # ---------------------------------------------------------------- degradation
    def choose_degradation(self, xn: np.ndarray | None, degradation: str) -> tuple[list[str], dict]:
        """(normalised data sample or None, spec) -> (DAG type names, info)."""
        from hsirestore.physics.degradations import parse_degradation

        spec = (degradation or "auto").strip()
        if spec.lower() == "auto":
            if xn is None:
                raise OptionError("--degradation auto needs the data")
            return auto_degradation(xn)
        if spec.lower() in ("generic", "unknown"):
            return [], {"degradation": "generic", "estimated": False}
        deg = parse_degradation(spec)
        names = list(dict.fromkeys(deg.names))
        return names, {"degradation": deg.spec(), "estimated": False}

    # ---------------------------------------------------------------- running
    def _tensor_fn(self, bands: int, names: list[str]) -> Callable[[torch.Tensor], torch.Tensor]:
        types = torch.from_numpy(types_vector(names))[None]
        gen = None
        if self.temperature > 0 and self.seed is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(self.seed))

        def net(x: torch.Tensor) -> torch.Tensor:
            t = types.to(x.device).expand(x.shape[0], -1)
            if self.model is None:
                return self.net(x, t)
            return self.model.restore(x, t, self.temperature, self.top_k, gen)

        if self.ensemble:
            from hsirestore.inference.ensemble import flip_ensemble

            net = flip_ensemble(net)
        return grouped(net, bands, GROUP, self.group_overlap)

    def keeps_observed(self, names: list[str]) -> bool:
        """Whether observed (non-zero) input entries are returned unchanged for these types."""
        if self.keep_observed == "auto":
            return bool(names) and set(names) <= COMPLETION_TYPES
        return self.keep_observed == "on"

    def _predictor(self, fn):
        from hsirestore.inference.engine import TiledPredictor

        return TiledPredictor(fn, tile=self.tile, overlap=self.overlap, multiple=self.multiple,
                              batch_size=self.batch_size, device=self.device, amp=self.amp,
                              progress=self.progress)

    def restore(self, cube: Cube | np.ndarray, degradation: str = "auto") -> Cube:
        """Cube (B, H, W) in any units -> restored Cube on the same scale (metadata kept)."""
        from hsirestore.inference.normalize import fit_scaling

        if not isinstance(cube, Cube):
            cube = Cube(np.asarray(cube, np.float32))
        finite = np.isfinite(cube.data).all(axis=0)
        if not finite.all():  # NaN/Inf pixels are invalid, as read_cube marks them
            valid = finite if cube.valid is None else (cube.valid & finite)
            cube = cube.with_data(np.where(finite, cube.data, 0), valid=valid)
        if 0 in cube.shape:
            raise ShapeError(f"the cube is empty (shape {cube.shape})")
        b = cube.bands
        if b < MIN_BANDS:
            raise ShapeError(f"the restoration model needs at least {MIN_BANDS} bands; this cube "
                             f"has {b}")
        if cube.valid is not None and not cube.valid.any():
            raise InvalidValueError("the cube has no valid pixel (every pixel is NaN or nodata)")
        t0 = time.perf_counter()
        given = cube
        bad = bad_bands(cube, b)
        if bad is not None:  # ENVI bad bands: interpolated for the model, written back as read
            cube = cube.with_data(fill_bad_bands(cube.data, bad))
        scaling = fit_scaling(cube, self.scaling)
        sample = None
        if (degradation or "auto").strip().lower() == "auto":
            sample = _centre(cube.data, 512)
            keep = _valid_window(cube, sample.shape) & ~_is_nodata(sample, cube.nodata)
            sample = scaling.to_model(np.where(keep, sample, np.nan))
        names, info = self.choose_degradation(sample, degradation)
        if _nothing_to_do(info):  # auto found a clean cube: returned unchanged
            self.last_info = {**info, "unchanged": True, "model": self.describe(),
                              "scaling": scaling.describe(),
                              "seconds": round(time.perf_counter() - t0, 3)}
            out = given.with_data(given.data.copy())
            out.attrs = {**given.attrs, "restoration": "none (auto: nothing detected)"}
            return out
        y = self._predictor(self._tensor_fn(b, names)).predict_array(cube, normalizer=scaling)
        if self.keeps_observed(names):  # in the input's own units: observed values bit-exact
            y = np.where((cube.data == 0) | _is_nodata(cube.data, cube.nodata), y, cube.data)
        if bad is not None:
            y[bad] = given.data[bad]
        self.last_info = {**info, "model": self.describe(), "scaling": scaling.describe(),
                          "keep_observed": self.keeps_observed(names),
                          "band_groups": band_groups(b, GROUP, self.group_overlap) if b >= GROUP
                          else f"resampled {b}->{GROUP}->{b}",
                          "bad_bands_kept": [] if bad is None else [int(i) for i in np.flatnonzero(bad)],
                          "seconds": round(time.perf_counter() - t0, 3)}
        out = given.with_data(y.astype(np.float32, copy=False))
        out.attrs = {**given.attrs, "restoration": info["degradation"], "restoration_model": self.describe()}
        return out

    def restore_stream(self, source: CubeSource, sink: CubeSink, degradation: str = "auto") -> dict:
        """Window-by-window restoration from a CubeSource into a CubeSink (same shape); the
        caller commits the sink. Returns the info dict (also in ``last_info``)."""
        from hsirestore.inference.normalize import fit_scaling

        b, h, w = (int(s) for s in source.shape)
        if b < MIN_BANDS:
            raise ShapeError(f"the restoration model needs at least {MIN_BANDS} bands; this cube "
                             f"has {b}")
        t0 = time.perf_counter()
        raw_source = source
        bad = bad_bands(getattr(source, "meta", None), b)
        if bad is not None:  # ENVI bad bands: interpolated for the model, written back as read
            source = _FilledBands(source, bad)
        scaling = fit_scaling(source, self.scaling)
        sample = None
        if (degradation or "auto").strip().lower() == "auto":
            s = min(512, h), min(512, w)
            r0, c0 = (h - s[0]) // 2, (w - s[1]) // 2
            raw = np.asarray(source.read_window(r0, r0 + s[0], c0, c0 + s[1]), np.float32)
            nod = getattr(getattr(source, "meta", None), "nodata", None)
            raw = np.where(_is_nodata(raw, nod), np.nan, raw)
            sample = scaling.to_model(raw)
        names, info = self.choose_degradation(sample, degradation)
        if _nothing_to_do(info):  # auto found a clean cube: copied unchanged
            meta = getattr(sink, "meta", None)
            if meta is not None:  # the same processing note as in memory (a copy of the meta)
                meta = meta.with_data(meta.data)
                meta.attrs = {**meta.attrs, "restoration": "none (auto: nothing detected)"}
                sink.meta = meta
            _copy_stream(raw_source, sink)
            self.last_info = {**info, "unchanged": True, "model": self.describe(),
                              "scaling": scaling.describe(),
                              "seconds": round(time.perf_counter() - t0, 3)}
            return self.last_info
        meta = getattr(sink, "meta", None)
        if meta is not None:  # processing notes for the writer (a copy: never the source's)
            meta = meta.with_data(meta.data)
            meta.attrs = {**meta.attrs, "restoration": info["degradation"],
                          "restoration_model": self.describe()}
            sink.meta = meta
        target = _KeepObserved(source, sink) if self.keeps_observed(names) else sink
        if bad is not None:
            target = _KeepBands(raw_source, target, bad)
        self._predictor(self._tensor_fn(b, names)).predict_stream(source, target, normalizer=scaling)
        self.last_info = {**info, "model": self.describe(), "scaling": scaling.describe(),
                          "keep_observed": self.keeps_observed(names),
                          "bad_bands_kept": [] if bad is None else [int(i) for i in np.flatnonzero(bad)],
                          "seconds": round(time.perf_counter() - t0, 3)}
        return self.last_info


class _FilledBands:
    """Source wrapper: the ``bad`` bands of every window are interpolated from good ones."""

    def __init__(self, source: CubeSource, bad: np.ndarray):
        self.source, self.bad, self.shape = source, bad, source.shape
        self.meta = getattr(source, "meta", None)

    def read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return fill_bad_bands(self.source.read_window(r0, r1, c0, c1), self.bad)


class _KeepBands:
    """Sink wrapper: the ``bad`` bands of every written block are the source's, as read."""

    def __init__(self, source: CubeSource, sink: CubeSink, bad: np.ndarray):
        self.source, self.sink, self.bad, self.shape = source, sink, bad, sink.shape

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        _, h, w = block.shape
        block = np.array(block, np.float32, copy=True)
        x = np.asarray(self.source.read_window(r0, r0 + h, c0, c0 + w), np.float32)
        block[self.bad] = x[self.bad]
        self.sink.write_window(r0, c0, block)


class _KeepObserved:
    """Sink wrapper: every written block keeps the source's non-zero, non-nodata values
    (input units)."""

    def __init__(self, source: CubeSource, sink: CubeSink):
        self.source, self.sink, self.shape = source, sink, sink.shape
        self.nodata = getattr(getattr(source, "meta", None), "nodata", None)

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        _, h, w = block.shape
        x = np.asarray(self.source.read_window(r0, r0 + h, c0, c0 + w), np.float32)
        hole = (x == 0) | _is_nodata(x, self.nodata)
        self.sink.write_window(r0, c0, np.where(hole, block, x).astype(np.float32, copy=False))


def _is_nodata(x: np.ndarray, nodata: float | None) -> np.ndarray:
    """bool array (x's shape) of values equal to ``nodata`` (the test of
    :func:`hsirestore.io.common.equals_nodata`); all False when there is no finite nodata."""
    eq = equals_nodata(x, nodata)
    return np.zeros(np.shape(x), bool) if eq is None else eq


def _centre(x: np.ndarray, side: int) -> np.ndarray:
    _, h, w = x.shape
    r0, c0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return x[:, r0:r0 + side, c0:c0 + side]


def _valid_window(cube: Cube, shape) -> Any:
    if cube.valid is None:
        return True
    return _centre(cube.valid[None], 512)


# ------------------------------------------------------------------ one file
def restore_file(restorer: Restorer, src, dst, degradation: str = "auto", *,
                 stream: bool = False, force: bool = False, var: str | None = None,
                 layout: str | None = None) -> dict:
    """Restore the cube file ``src`` into ``dst`` (format by suffix) with ``restorer``.

    In memory, or window by window with ``stream`` (bounded memory: the input is read and
    the output written tile by tile, committed at the end or removed on failure). The output
    keeps the input's scale, and its integer type when the input held integer counts
    (:func:`hsirestore.io.output_dtype`). Atomic; never replaces an input (OptionError) or an
    existing output without ``force``. Returns {"shape": (bands, rows, cols), "dtype":
    written type, "files": written files, "info": ``restorer.last_info``}.
    """
    from hsirestore.io import (create_cube, detect_format, open_cube, output_dtype_for,
                               output_paths, read_cube, writable_dtype, write_cube)
    from hsirestore.io.files import refuse_overwriting_inputs

    refuse_overwriting_inputs([src], output_paths(dst))
    if not stream:
        cube = read_cube(src, var=var, layout=layout)
        dtype = output_dtype_for(cube, dst)
        out = restorer.restore(cube, degradation)
        files = write_cube(out, dst, force=force, dtype=dtype)
        shape = out.shape
    else:
        source = open_cube(src, var=var, layout=layout)
        try:
            dtype = output_dtype_for(source, dst)
            sink = create_cube(dst, source.meta, source.shape, force=force, dtype=dtype)
            try:
                restorer.restore_stream(source, sink, degradation)
                sink.commit()
            except BaseException:
                sink.abort()
                raise
            shape = tuple(int(s) for s in source.shape)
        finally:
            source.close()
        files = output_paths(dst)
    return {"shape": tuple(shape), "dtype": writable_dtype(detect_format(dst), dtype) or "float32",
            "files": [Path(f) for f in files], "info": restorer.last_info}
