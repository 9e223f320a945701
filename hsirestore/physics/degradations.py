"""Seeded, composable degradations of cubes (bands, H, W) in the normalised [0, 1] range
(numpy + scipy only).

Spec grammar: ``name[:key=value[,key=value]][+name...]``, applied left to right, e.g.
``blur+noise``, ``noise:sigma=30``, ``sr:scale=8``, ``blur:sigma=2+noise:sigma=15``.
Noise strengths (``sigma``) are in units of 1/255 of the normalised range.

Types (``DEGRADATION_TYPES``, in the order the HSI-VAR model embeds them) and parameters
(defaults in brackets; ranges follow the nine-task all-in-one protocol of MP-HSIR):

* ``noise``: i.i.d. Gaussian, ``sigma`` [30] (1/255 units); not clipped.
* ``niid-noise``: Gaussian with a per-band sigma drawn uniformly in [``min`` 10, ``max`` 70].
* ``poisson``: shot noise, y = Poisson(x * ``peak``) / peak, ``peak`` [30] photons at 1.0.
* ``impulse``: salt (1) and pepper (0) noise on a fraction of the values of each band:
  ``ratio`` fixed for every band, or by default drawn per band uniformly in
  [``min`` 0.1, ``max`` 0.7].
* ``stripes``: per band, a fraction uniform in [``min`` 0.05, ``max`` 0.15] of the columns
  gets a constant offset uniform in [-``strength``, ``strength``] [0.25].
* ``deadlines``: per band, a fraction uniform in [``min`` 0.05, ``max`` 0.15] of the
  columns is set to 0.
* ``blur``: Gaussian, ``sigma`` [1.6] px; ``radius`` truncates the kernel at that many px
  (given alone it sets sigma = radius / 3, e.g. ``blur:radius=15``).
* ``motion-blur``: a normalised line kernel of ``length`` [9] px at ``angle`` [0] degrees.
* ``sr``: x``scale`` [8] super-resolution input: Gaussian anti-alias blur (sigma
  scale / 2), decimation by ``scale``, then bicubic upsampling (Keys, a = -0.5, edges
  replicated) back to the same size, so input and output sizes match (the restoration
  convention).
* ``inpaint``: a fraction ``ratio`` [0.7] of the pixels (all bands) set to 0.
* ``band-missing``: round(``ratio`` [0.3] * bands) whole bands set to 0.
* ``haze``: atmospheric scattering I = J t + A (1 - t), t = exp(-2 ``density`` [0.5] d w),
  depth d growing from 0.2 (top row) to 1 (bottom row), wavelength factor w from 1.3 (first
  band) to 0.7 (last band), airlight A = ``airlight`` [0.8].

``Degradation.apply(x, seed)`` (an int seed >= 0 or a numpy Generator) returns
(y float32, info): ``info["spec"]``, ``info["steps"]`` (JSON-able: name and the parameters
actually used, e.g. drawn sigmas) and ``info["masks"]`` (numpy bool arrays, True where data
were destroyed: ``inpaint`` (H, W), ``deadlines`` (bands, W), ``band-missing`` (bands,),
``impulse`` (bands, H, W)).
Deterministic for a given seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from hsirestore.errors import OptionError, ShapeError

__all__ = ["DEGRADATION_TYPES", "PARAMS", "Step", "Degradation", "parse_degradation",
           "random_degradation", "motion_kernel", "bicubic_matrix", "jsonable_info"]

#: Degradation types in the order the restoration model embeds them.
DEGRADATION_TYPES = ("noise", "niid-noise", "poisson", "impulse", "stripes", "deadlines",
                     "blur", "motion-blur", "sr", "inpaint", "band-missing", "haze")

#: name -> {parameter: default (None: derived, see the module docstring)}
PARAMS: dict[str, dict[str, float | None]] = {
    "noise": {"sigma": 30.0},
    "niid-noise": {"min": 10.0, "max": 70.0},
    "poisson": {"peak": 30.0},
    "impulse": {"ratio": None, "min": 0.1, "max": 0.7},
    "stripes": {"min": 0.05, "max": 0.15, "strength": 0.25},
    "deadlines": {"min": 0.05, "max": 0.15},
    "blur": {"sigma": None, "radius": None},
    "motion-blur": {"length": 9.0, "angle": 0.0},
    "sr": {"scale": 8.0},
    "inpaint": {"ratio": 0.7},
    "band-missing": {"ratio": 0.3},
    "haze": {"density": 0.5, "airlight": 0.8},
}
#: kept for callers of the first version: name -> {parameter: default}
DEFAULTS = {n: {k: v for k, v in p.items() if v is not None} for n, p in PARAMS.items()}

BLUR_SIGMA = 1.6

# parameter -> (low, high) allowed (inclusive); None = unbounded
_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "sigma": (0.0, None), "min": (0.0, None), "max": (0.0, None), "peak": (1e-6, None),
    "ratio": (0.0, 1.0), "strength": (0.0, None), "radius": (0.0, None),
    "length": (1.0, None), "angle": (None, None), "scale": (1.0, 64.0),
    "density": (0.0, None), "airlight": (0.0, None),
}
_FRACTION_RANGES = ("impulse", "stripes", "deadlines")


@dataclass
class Step:
    name: str
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class Degradation:
    """A parsed spec; ``apply(x (bands, H, W), seed) -> (y, info)``."""

    steps: list[Step] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def spec(self) -> str:
        """The spec string (explicit parameters only); parses back to the same steps."""
        return "+".join(s.name + (":" + ",".join(f"{k}={v:g}" for k, v in s.params.items())
                                  if s.params else "") for s in self.steps)

    def apply(self, x: np.ndarray, seed=0) -> tuple[np.ndarray, dict]:
        """x (bands, H, W) -> (y float32 (bands, H, W), info); ``seed`` is an int seed >= 0
        or a numpy Generator (consumed); OptionError for a negative seed."""
        x = np.asarray(x)
        if x.ndim != 3:
            raise ShapeError(f"degradations need a (bands, rows, cols) cube; got shape {x.shape}")
        rng = seed if isinstance(seed, np.random.Generator) else _rng(seed)
        y = x.astype(np.float32, copy=True)
        info: dict = {"spec": self.spec(), "steps": [], "masks": {}}
        for step in self.steps:
            p = {**PARAMS[step.name], **step.params}
            y, used, mask = _APPLY[step.name](y, p, rng)
            info["steps"].append({"name": step.name, **used})
            if mask is not None:
                old = info["masks"].get(step.name)
                info["masks"][step.name] = mask if old is None else (old | mask)
        return np.ascontiguousarray(y, dtype=np.float32), info


def _rng(seed) -> np.random.Generator:
    """numpy Generator for an int seed (None: fresh entropy); OptionError for a negative or
    otherwise unusable seed instead of numpy's bare ValueError."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise OptionError(f"seed must be a whole number >= 0 (or a numpy Generator); "
                          f"got {seed!r}") from None


def jsonable_info(info: dict) -> dict:
    """``info`` without the numpy masks (for JSON/metadata), with mask fractions instead."""
    out = {k: v for k, v in info.items() if k != "masks"}
    if info.get("masks"):
        out["mask_fraction"] = {k: round(float(np.mean(m)), 6) for k, m in info["masks"].items()}
    return out


def _check_params(name: str, params: dict[str, float]) -> None:
    for key, val in params.items():
        lo, hi = _LIMITS[key]
        if not math.isfinite(val) or (lo is not None and val < lo) or (hi is not None and val > hi):
            rng = (f">= {lo:g}" if hi is None else f"in [{lo:g}, {hi:g}]") if lo is not None else "finite"
            raise OptionError(f"parameter {key} of {name} must be {rng}; got {val:g}")
    full = {**PARAMS[name], **params}
    if name in _FRACTION_RANGES or name == "niid-noise":
        if full["min"] > full["max"]:
            raise OptionError(f"{name}: min ({full['min']:g}) is larger than max ({full['max']:g})")
        if name in _FRACTION_RANGES and full["max"] > 1:
            raise OptionError(f"{name}: min and max are fractions in [0, 1]")
    if name == "sr" and full["scale"] != int(full["scale"]):
        raise OptionError(f"sr: scale must be a whole number; got {full['scale']:g}")


#: words the restorer understands as a whole spec, but which are not degradation types
_WHOLE_SPEC_WORDS = ("auto", "generic", "unknown")


def _unknown_name(name: str, several: bool) -> str:
    """The message for a name that is not a degradation type: 'auto'/'generic' inside a
    combination, or a typo with the closest valid name."""
    import difflib

    valid = ", ".join(DEGRADATION_TYPES)
    if name in _WHOLE_SPEC_WORDS:
        if several:
            return (f"{name!r} cannot be combined with other types; give {name!r} alone, or "
                    f"name the types joined by '+' (valid: {valid})")
        return f"{name!r} is not a degradation type here; valid: {valid}"
    close = difflib.get_close_matches(name, DEGRADATION_TYPES, n=1, cutoff=0.6)
    if not close:  # motion_blur, motion blur -> motion-blur
        alt = name.replace("_", "-").replace(" ", "-")
        close = [alt] if alt in DEGRADATION_TYPES else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown degradation {name!r}{hint}; valid: {valid}"


def parse_degradation(spec: str) -> Degradation:
    """Parse ``blur+noise:sigma=30``; OptionError on unknown names or bad parameters."""
    if spec is None or not str(spec).strip():
        raise OptionError("empty degradation spec; valid names: " + ", ".join(DEGRADATION_TYPES))
    steps = []
    for part in str(spec).strip().split("+"):
        name, _, args = part.strip().partition(":")
        name = name.strip().lower()
        if not name:
            raise OptionError(f"empty name in degradation spec {spec!r}")
        if name not in PARAMS:
            raise OptionError(_unknown_name(name, several="+" in str(spec)))
        params: dict[str, float] = {}
        for kv in filter(None, (a.strip() for a in args.split(","))):
            key, eq, val = kv.partition("=")
            key = key.strip().lower()
            if not eq or key not in PARAMS[name]:
                raise OptionError(f"bad parameter {kv!r} for {name}; valid: "
                                  + ", ".join(f"{k}=<number>" for k in PARAMS[name]))
            try:
                params[key] = float(val)
            except ValueError:
                raise OptionError(f"parameter {key} of {name} must be a number, got {val.strip()!r}") from None
        _check_params(name, params)
        steps.append(Step(name, params))
    return Degradation(steps)


# application order of a random mixture: optics first, sensor noise last
_ORDER = ("haze", "blur", "motion-blur", "sr", "band-missing", "inpaint", "deadlines", "stripes",
          "poisson", "noise", "niid-noise", "impulse")
_RANDOM_RANGES = {"noise": {"sigma": (5, 70)}, "blur": {"sigma": (0.8, 3.0)},
                  "motion-blur": {"length": (5, 15), "angle": (0, 180)},
                  "inpaint": {"ratio": (0.5, 0.9)}, "band-missing": {"ratio": (0.1, 0.3)},
                  "poisson": {"peak": (10, 100)}, "haze": {"density": (0.2, 0.8)},
                  "stripes": {"strength": (0.1, 0.3)}}


def random_degradation(rng: np.random.Generator, max_mix: int = 2) -> Degradation:
    """A random type or a mixture of up to ``max_mix`` distinct types (for training), with
    strengths drawn across the protocol ranges; types that draw per band (niid-noise,
    impulse, stripes, deadlines) keep their default ranges."""
    if max_mix < 1:
        raise OptionError(f"max_mix must be >= 1; got {max_mix}")
    k = int(rng.integers(1, min(max_mix, len(DEGRADATION_TYPES)) + 1))
    names = sorted(rng.choice(DEGRADATION_TYPES, size=k, replace=False).tolist(), key=_ORDER.index)
    steps = []
    for n in names:
        params = {key: float(rng.uniform(lo, hi)) for key, (lo, hi) in _RANDOM_RANGES.get(n, {}).items()}
        if n == "sr":
            params["scale"] = float(rng.choice([2, 4, 8]))
        steps.append(Step(n, params))
    return Degradation(steps)


# ------------------------------------------------------------------------------ operators
# Each returns (y float32 (B, H, W), parameters used (JSON-able), mask or None).
def _noise(y, p, rng):
    s = p["sigma"] / 255.0
    return y + rng.normal(0, s, y.shape).astype(np.float32), {"sigma": p["sigma"]}, None


def _niid(y, p, rng):
    sig = rng.uniform(p["min"], p["max"], y.shape[0]) / 255.0
    y = y + rng.normal(0, 1, y.shape).astype(np.float32) * sig[:, None, None].astype(np.float32)
    return y, {"sigma_per_band": (sig * 255).round(4).tolist()}, None


def _poisson(y, p, rng):
    peak = p["peak"]
    lam = np.clip(np.nan_to_num(y), 0, None).astype(np.float64) * peak
    return (rng.poisson(lam) / peak).astype(np.float32), {"peak": peak}, None


def _per_band_ratio(p, bands, rng):
    if p.get("ratio") is not None:
        return np.full(bands, float(p["ratio"]))
    return rng.uniform(p["min"], p["max"], bands)


def _impulse(y, p, rng):
    b = y.shape[0]
    ratio = _per_band_ratio(p, b, rng)
    hit = rng.random(y.shape) < ratio[:, None, None]
    salt = rng.random(y.shape) < 0.5
    y = y.copy()
    y[hit & salt] = 1.0
    y[hit & ~salt] = 0.0
    return y, {"ratio_per_band": ratio.round(4).tolist()}, hit


def _columns(y, p, rng) -> tuple[list[np.ndarray], np.ndarray]:
    b, _, w = y.shape
    ratio = rng.uniform(p["min"], p["max"], b)
    cols = [np.sort(rng.choice(w, min(w, max(1, int(round(r * w)))), replace=False)) for r in ratio]
    return cols, ratio


def _stripes(y, p, rng):
    cols, ratio = _columns(y, p, rng)
    y = y.copy()
    for k, c in enumerate(cols):
        y[k][:, c] += rng.uniform(-p["strength"], p["strength"], c.size).astype(np.float32)
    return y, {"ratio_per_band": ratio.round(4).tolist(), "strength": p["strength"]}, None


def _deadlines(y, p, rng):
    cols, ratio = _columns(y, p, rng)
    y = y.copy()
    mask = np.zeros((y.shape[0], y.shape[2]), bool)
    for k, c in enumerate(cols):
        y[k][:, c] = 0.0
        mask[k, c] = True
    return y, {"ratio_per_band": ratio.round(4).tolist()}, mask


def _blur(y, p, rng):
    sigma, radius = p.get("sigma"), p.get("radius")
    if sigma is None:
        sigma = radius / 3.0 if radius is not None else BLUR_SIGMA
    used = {"sigma": round(float(sigma), 6)}
    if sigma == 0:
        return y, used, None
    kw = {}
    if radius is not None:
        r = max(1, int(round(radius)))
        kw["radius"] = (0, r, r)
        used["radius"] = r
    return ndimage.gaussian_filter(y, (0, sigma, sigma), mode="reflect", **kw), used, None


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised line kernel (odd size) of ``length`` px at ``angle`` degrees
    (0 = horizontal, counter-clockwise)."""
    n = max(1, int(round(length)))
    size = n if n % 2 else n + 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    t = np.deg2rad(angle)
    for s in np.linspace(-(n - 1) / 2, (n - 1) / 2, 4 * n):
        # round half up (Python's round() goes to even, which made even lengths one pixel
        # too long: 0.5 -> 0 at one end, 9.5 -> 10 at the other)
        r, q = int(np.floor(c - s * np.sin(t) + 0.5)), int(np.floor(c + s * np.cos(t) + 0.5))
        k[r, q] = 1.0
    return k / k.sum()


def _motion(y, p, rng):
    k = motion_kernel(p["length"], p["angle"])
    out = np.stack([ndimage.convolve(b, k, mode="reflect") for b in y])
    return out, {"length": p["length"], "angle": p["angle"]}, None


def bicubic_matrix(n_out: int, n_in: int, scale: float, offset: float = 0.0) -> np.ndarray:
    """(n_out, n_in) bicubic (Keys, a = -0.5) interpolation weights: output sample i reads
    input coordinate (i - offset) / scale; edges replicate. Rows sum to 1."""
    x = (np.arange(n_out, dtype=np.float64) - offset) / scale
    base = np.floor(x).astype(int)
    m = np.zeros((n_out, n_in), np.float64)
    a = -0.5
    for k in range(-1, 3):
        t = np.abs(x - (base + k))
        w = np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                     np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))
        np.add.at(m, (np.arange(n_out), np.clip(base + k, 0, n_in - 1)), w)
    return m / m.sum(axis=1, keepdims=True)


def _sr(y, p, rng):
    s = int(p["scale"])
    if s == 1:
        return y, {"scale": 1}, None
    b, h, w = y.shape
    off = s // 2  # low pixel j is the sample at s * j + s // 2 of the blurred image
    low = ndimage.gaussian_filter(y, (0, 0.5 * s, 0.5 * s), mode="reflect")[:, off::s, off::s]
    uh = bicubic_matrix(h, low.shape[1], s, off).astype(np.float32)
    uw = bicubic_matrix(w, low.shape[2], s, off).astype(np.float32)
    up = np.einsum("ij,bjk,lk->bil", uh, low, uw, optimize=True)
    return up.astype(np.float32), {"scale": s, "low_size": list(low.shape[1:])}, None


def _inpaint(y, p, rng):
    missing = rng.random(y.shape[1:]) < p["ratio"]
    y = y.copy()
    y[:, missing] = 0.0
    return y, {"ratio": p["ratio"], "missing_fraction": round(float(missing.mean()), 6)}, missing


def _band_missing(y, p, rng):
    n = int(round(p["ratio"] * y.shape[0]))
    bands = np.sort(rng.choice(y.shape[0], n, replace=False))
    y = y.copy()
    y[bands] = 0.0
    mask = np.zeros(y.shape[0], bool)
    mask[bands] = True
    return y, {"ratio": p["ratio"], "bands": bands.tolist()}, mask


def _haze(y, p, rng):
    b, h, w = y.shape
    depth = np.linspace(0.2, 1.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    wave = np.linspace(1.3, 0.7, b, dtype=np.float32)[:, None, None]
    t = np.exp(-p["density"] * 2 * depth[None] * wave)
    a = np.float32(p["airlight"])
    return y * t + a * (1 - t), {"density": p["density"], "airlight": p["airlight"]}, None


_APPLY = {"noise": _noise, "niid-noise": _niid, "poisson": _poisson, "impulse": _impulse,
          "stripes": _stripes, "deadlines": _deadlines, "blur": _blur, "motion-blur": _motion,
          "sr": _sr, "inpaint": _inpaint, "band-missing": _band_missing, "haze": _haze}
