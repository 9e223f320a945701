"""Synthetic demo scenes built from real measured reflectance spectra.

The spectra are the 24 ColorChecker patches measured by N. Ohta, as shipped by the
colour-science package (BSD-3-Clause), so the demo needs no user data and no download.
Numpy only (no torch).
"""
from __future__ import annotations

import warnings

import numpy as np

from hsirestore.errors import OptionError

#: smallest and largest demo scene (pixels per side): the 6 x 4 patch grid needs cells of at
#: least 2 pixels; 4096 px already means 1.9 GB per 28-band float32 cube
MIN_SIZE, MAX_SIZE = 16, 4096


def colorchecker_reflectances(wavelengths: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(patch names, reflectance (24, bands)) sampled at ``wavelengths`` nm.

    Linear interpolation of the 5 nm measurements (380-780 nm); constant beyond the ends.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour

    sds = colour.SDS_COLOURCHECKERS["ColorChecker N Ohta"]
    names = list(sds.keys())
    wl = np.asarray(wavelengths, dtype=np.float64)
    refl = np.stack([np.interp(wl, sds[n].wavelengths, sds[n].values) for n in names])
    return names, refl.astype(np.float32)


def check_scene_options(size, seed) -> None:
    """OptionError unless ``size`` is a whole number in [MIN_SIZE, MAX_SIZE] and ``seed`` a
    whole number >= 0."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise OptionError(f"--size must be a whole number of pixels; got {size!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise OptionError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels; got {size}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"--seed must be a whole number >= 0; got {seed!r}")


def synthetic_scene(wavelengths: np.ndarray, size: int = 256, seed: int = 0) -> np.ndarray:
    """A (bands, size, size) float32 reflectance scene in [0, 1].

    A ColorChecker-like grid of patches on a neutral background, plus discs and a striped
    textile made of pairs of real reflectances, under a smooth illumination falloff. Every
    pixel's spectrum is a non-negative mixture of measured reflectances. OptionError when
    ``size`` is outside [MIN_SIZE, MAX_SIZE] or ``seed`` is negative.
    """
    check_scene_options(size, seed)
    rng = np.random.default_rng(seed)
    names, refl = colorchecker_reflectances(wavelengths)
    bands = refl.shape[1]
    gray = names.index("neutral 5 (.70 D)") if "neutral 5 (.70 D)" in names else 21
    label = np.full((size, size), gray, dtype=np.int64)
    # 6 x 4 patch grid in the upper two thirds
    cell = size // 8
    for i in range(4):
        for j in range(6):
            r0, c0 = cell // 2 + i * cell * 5 // 4, cell // 2 + j * cell * 5 // 4
            label[r0 : r0 + cell, c0 : c0 + cell] = i * 6 + j
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    scene = refl[label].transpose(2, 0, 1).copy()  # (bands, H, W)
    # discs of random patches along the bottom
    for _ in range(5):
        cy, cx = rng.uniform(0.85, 0.9) * size, rng.uniform(0.08, 0.92) * size
        rad = rng.uniform(0.03, 0.06) * size
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rad**2
        scene[:, disc] = refl[rng.integers(0, 24)][:, None]
    # a striped textile mixing two spectra (fine spatial detail)
    a, b = refl[rng.choice(18, size=2, replace=False)]
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + 0.5 * yy) / 7.0)
    region = (yy > 0.71 * size) & (yy < 0.78 * size) & (xx > 0.1 * size) & (xx < 0.9 * size)
    scene[:, region] = (a[:, None] * t[region] + b[:, None] * (1 - t[region]))
    # smooth illumination falloff (vignetting-like), 0.75 .. 1.0
    shade = 1.0 - 0.25 * (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size**2 / 2))
    scene *= shade[None]
    assert scene.shape == (bands, size, size)
    return np.clip(scene, 0.0, 1.0).astype(np.float32)
