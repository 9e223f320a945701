"""Seeded, composable degradations of cubes in the normalised [0, 1] range (numpy only).

Spec grammar: ``name[:key=value[,key=value]][+name...]``, e.g. ``blur+noise``,
``noise:sigma=30``, ``sr:scale=8``, ``inpaint:ratio=0.7``. Noise strengths (``sigma``) are
in units of 1/255 of the normalised range. Applied left to right.

Defaults follow the nine-task all-in-one HSI protocol (MP-HSIR): Gaussian noise sigma 70,
non-i.i.d. Gaussian sigma in [10, 70] per band, stripes on 5-15 % of columns, impulse noise
ratio in [0.1, 0.7], Gaussian blur, motion blur, x8 super-resolution, 90 % inpainting,
30 % band missing, haze.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from hsirestore.errors import OptionError

#: Degradation types in the order the restoration model embeds them.
DEGRADATION_TYPES = ("noise", "niid-noise", "poisson", "impulse", "stripes", "deadlines",
                     "blur", "motion-blur", "sr", "inpaint", "band-missing", "haze")

DEFAULTS: dict[str, dict[str, float]] = {
    "noise": {"sigma": 70.0},
    "niid-noise": {"min": 10.0, "max": 70.0},
    "poisson": {"peak": 30.0},
    "impulse": {"ratio": 0.3},
    "stripes": {"min": 0.05, "max": 0.15, "strength": 0.25},
    "deadlines": {"min": 0.05, "max": 0.15},
    "blur": {"sigma": 1.6},
    "motion-blur": {"length": 9.0, "angle": 0.0},
    "sr": {"scale": 8.0},
    "inpaint": {"ratio": 0.9},
    "band-missing": {"ratio": 0.3},
    "haze": {"density": 0.5},
}


@dataclass
class Step:
    name: str
    params: dict[str, float]


@dataclass
class Degradation:
    """A parsed spec; ``apply(x (B, H, W), seed) -> (y, info)``."""

    steps: list[Step] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def spec(self) -> str:
        return "+".join(s.name + (":" + ",".join(f"{k}={v:g}" for k, v in s.params.items())
                                  if s.params else "") for s in self.steps)

    def apply(self, x: np.ndarray, seed=0) -> tuple[np.ndarray, dict]:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        y = np.asarray(x, np.float32).copy()
        info: dict = {"spec": self.spec(), "steps": []}
        for step in self.steps:
            p = {**DEFAULTS[step.name], **step.params}
            y, used = _APPLY[step.name](y, p, rng)
            info["steps"].append({"name": step.name, **used})
        return y.astype(np.float32), info


def parse_degradation(spec: str) -> Degradation:
    """Parse ``blur+noise:sigma=30``; OptionError on unknown names or bad parameters."""
    if not spec or not spec.strip():
        raise OptionError("empty degradation spec")
    steps = []
    for part in spec.strip().split("+"):
        name, _, args = part.strip().partition(":")
        name = name.strip().lower()
        if name not in DEFAULTS:
            raise OptionError(f"unknown degradation {name!r}; valid: {', '.join(DEGRADATION_TYPES)}")
        params = {}
        for kv in filter(None, (a.strip() for a in args.split(","))):
            key, eq, val = kv.partition("=")
            if not eq or key.strip() not in DEFAULTS[name]:
                raise OptionError(f"bad parameter {kv!r} for {name}; valid: "
                                  + ", ".join(f"{k}=<number>" for k in DEFAULTS[name]))
            try:
                params[key.strip()] = float(val)
            except ValueError:
                raise OptionError(f"parameter {key.strip()} of {name} must be a number, got {val!r}") from None
        steps.append(Step(name, params))
    return Degradation(steps)


def random_degradation(rng: np.random.Generator, max_mix: int = 2) -> Degradation:
    """A random type or mixture of up to ``max_mix`` types with strengths across the
    protocol ranges (for training)."""
    k = int(rng.integers(1, max_mix + 1))
    names = list(rng.choice(DEGRADATION_TYPES, size=k, replace=False))
    order = {n: i for i, n in enumerate(("haze", "blur", "motion-blur", "sr", "band-missing",
                                         "inpaint", "deadlines", "stripes", "poisson", "noise",
                                         "niid-noise", "impulse"))}
    names.sort(key=order.get)
    ranges = {"noise": {"sigma": (5, 70)}, "blur": {"sigma": (0.8, 3.0)},
              "motion-blur": {"length": (5, 15), "angle": (0, 180)}, "sr": {"scale": (2, 8)},
              "inpaint": {"ratio": (0.5, 0.9)}, "band-missing": {"ratio": (0.1, 0.3)},
              "impulse": {"ratio": (0.1, 0.7)}, "poisson": {"peak": (10, 100)},
              "haze": {"density": (0.2, 0.8)}}
    steps = []
    for n in names:
        params = {key: float(rng.uniform(lo, hi)) for key, (lo, hi) in ranges.get(n, {}).items()}
        if n == "sr":
            params["scale"] = float(rng.choice([2, 4, 8]))
        steps.append(Step(n, params))
    return Degradation(steps)


# ------------------------------------------------------------------------------ operators
def _noise(y, p, rng):
    s = p["sigma"] / 255.0
    return y + rng.normal(0, s, y.shape).astype(np.float32), {"sigma": p["sigma"]}


def _niid(y, p, rng):
    sig = rng.uniform(p["min"], p["max"], y.shape[0]) / 255.0
    y = y + rng.normal(0, 1, y.shape).astype(np.float32) * sig[:, None, None].astype(np.float32)
    return y, {"sigma_per_band": (sig * 255).round(3).tolist()}


def _poisson(y, p, rng):
    peak = p["peak"]
    return rng.poisson(np.clip(y, 0, None) * peak).astype(np.float32) / np.float32(peak), {"peak": peak}


def _impulse(y, p, rng):
    ratio = p["ratio"]
    hit = rng.random(y.shape) < ratio
    salt = rng.random(y.shape) < 0.5
    y = y.copy()
    y[hit & salt] = 1.0
    y[hit & ~salt] = 0.0
    return y, {"ratio": ratio}


def _columns(y, p, rng):
    b, h, w = y.shape
    ratio = rng.uniform(p["min"], p["max"])
    n = max(1, int(round(ratio * w)))
    return [np.sort(rng.choice(w, n, replace=False)) for _ in range(b)], ratio


def _stripes(y, p, rng):
    cols, ratio = _columns(y, p, rng)
    y = y.copy()
    for k, c in enumerate(cols):
        y[k][:, c] += rng.uniform(-p["strength"], p["strength"], c.size).astype(np.float32)
    return y, {"ratio": float(ratio), "strength": p["strength"]}


def _deadlines(y, p, rng):
    cols, ratio = _columns(y, p, rng)
    y = y.copy()
    for k, c in enumerate(cols):
        y[k][:, c] = 0.0
    return y, {"ratio": float(ratio)}


def _blur(y, p, rng):
    s = p["sigma"]
    return ndimage.gaussian_filter(y, (0, s, s), mode="reflect"), {"sigma": s}


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised line kernel of ``length`` px at ``angle`` degrees."""
    n = max(1, int(round(length)))
    size = n if n % 2 else n + 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    t = np.deg2rad(angle)
    for s in np.linspace(-(n - 1) / 2, (n - 1) / 2, 4 * n):
        r, q = int(round(c - s * np.sin(t))), int(round(c + s * np.cos(t)))
        k[r, q] = 1.0
    return k / k.sum()


def _motion(y, p, rng):
    k = motion_kernel(p["length"], p["angle"])
    return np.stack([ndimage.convolve(b, k, mode="reflect") for b in y]), {
        "length": p["length"], "angle": p["angle"]}


def _sr(y, p, rng):
    """Anti-aliased downsampling by ``scale`` then cubic upsampling to the same size, so input
    and output sizes match (restoration convention)."""
    s = int(p["scale"])
    b, h, w = y.shape
    low = ndimage.gaussian_filter(y, (0, 0.5 * s, 0.5 * s), mode="reflect")[:, s // 2::s, s // 2::s]
    up = ndimage.zoom(low, (1, h / low.shape[1], w / low.shape[2]), order=3, mode="nearest",
                      grid_mode=True)
    return up[:, :h, :w].astype(np.float32), {"scale": s}


def _inpaint(y, p, rng):
    missing = rng.random(y.shape[1:]) < p["ratio"]
    y = y.copy()
    y[:, missing] = 0.0
    return y, {"ratio": p["ratio"], "missing_fraction": float(missing.mean())}


def _band_missing(y, p, rng):
    n = int(round(p["ratio"] * y.shape[0]))
    bands = np.sort(rng.choice(y.shape[0], n, replace=False))
    y = y.copy()
    y[bands] = 0.0
    return y, {"ratio": p["ratio"], "bands": bands.tolist()}


def _haze(y, p, rng):
    """I = J t + A (1 - t), transmission decaying across the image, stronger at short bands."""
    b, h, w = y.shape
    depth = np.linspace(0.2, 1.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    wave = np.linspace(1.3, 0.7, b, dtype=np.float32)[:, None, None]
    t = np.exp(-p["density"] * 2 * depth[None] * wave)
    return y * t + 0.8 * (1 - t), {"density": p["density"]}


_APPLY = {"noise": _noise, "niid-noise": _niid, "poisson": _poisson, "impulse": _impulse,
          "stripes": _stripes, "deadlines": _deadlines, "blur": _blur, "motion-blur": _motion,
          "sr": _sr, "inpaint": _inpaint, "band-missing": _band_missing, "haze": _haze}
