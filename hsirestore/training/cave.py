"""CAVE scenes from ../shared/data/cave (HDF5: dataset `cube` uint16 (31, 512, 512) with
attribute `scale`, dataset `wavelength_nm`). Never part of the installed product's runtime."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hsirestore.paths import shared_data_dir  # noqa: F401  (re-exported for the trainers)


def cave_files(split: str) -> list[Path]:
    folder = shared_data_dir() / "cave" / split
    return sorted(folder.glob("*.h5"))


def load_cave_scene(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray]:
    """(cube float32 (31, rows, cols) in [0, 1], wavelengths nm (31,))."""
    import h5py

    with h5py.File(path, "r") as f:
        ds = f["cube"]
        cube = ds[...].astype(np.float32) * np.float32(ds.attrs.get("scale", 1.0 / 4095.0))
        wl = f["wavelength_nm"][...].astype(np.float64)
    return cube, wl


def load_cave(split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """All scenes of a split as (name, cube, wavelengths); empty list if the data is absent."""
    return [(p.stem, *load_cave_scene(p)) for p in cave_files(split)]


def centre_crop(cube: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (bands, size, size)."""
    _, h, w = cube.shape
    r0, c0 = (h - size) // 2, (w - size) // 2
    return cube[:, r0 : r0 + size, c0 : c0 + size]
