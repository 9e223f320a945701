"""MATLAB .mat files: v5 through scipy.io, v7.3 (HDF5-based) through h5py (axes reversed).

The cube variable is found automatically when the file holds exactly one 3-D numeric array
(or, failing that, exactly one 2-D array, e.g. CASSI masks and measurements); otherwise it
must be named with ``var``. Wavelengths come from a variable named wavelength(s), wl or
bands when present. MATLAB arrays are (rows, cols, bands); the band axis is detected by
:func:`hsirestore.io.common.to_bands_first` unless ``layout`` is given.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsirestore.errors import AmbiguousInputError, FormatError
from hsirestore.io.atomic import atomic_paths
from hsirestore.io.common import cast_for_writing, clean, to_bands_first
from hsirestore.io.cube import Cube

WAVELENGTH_NAMES = ("wavelength", "wavelengths", "wavelength_nm", "wl", "bands")
PREFERRED = ("cube", "img", "rad", "data", "meas_real", "meas", "mask", "hsi", "x")
LAYOUT_VAR = "hsirestore_layout"


def _variables(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """(name -> array (MATLAB axis order), is_v73)."""
    import scipy.io as sio

    try:
        raw = sio.loadmat(str(path))
        return {k: v for k, v in raw.items() if not k.startswith("__")}, False
    except NotImplementedError:
        pass  # v7.3
    except Exception as e:
        raise FormatError(f"{path}: not a readable MATLAB file ({e})") from e
    import h5py

    out = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
                    out[name] = np.asarray(obj[...]).T  # h5py sees MATLAB arrays reversed
            f.visititems(visit)
    except OSError as e:
        raise FormatError(f"{path}: not a readable MATLAB file ({e})") from e
    return out, True


def list_variables(path) -> dict[str, tuple]:
    return {k: v.shape for k, v in _variables(Path(path))[0].items()}


def _pick(arrays: dict[str, np.ndarray], var: str | None, path: Path) -> str:
    numeric = {k: v for k, v in arrays.items()
               if isinstance(v, np.ndarray) and v.dtype.kind in "uifb" and v.ndim in (2, 3)
               and min(v.shape) > 1}
    described = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in arrays.items()
                          if isinstance(v, np.ndarray)) or "(nothing)"
    if var is not None:
        if var not in arrays:
            raise FormatError(f"{path}: no variable {var!r}; the file holds: {described}")
        return var
    for ndim in (3, 2):
        cands = [k for k, v in numeric.items() if v.ndim == ndim and k not in WAVELENGTH_NAMES]
        if len(cands) == 1:
            return cands[0]
        if len(cands) > 1:
            raise AmbiguousInputError(
                f"{path}: several {ndim}-D arrays ({', '.join(sorted(cands))}); choose one with --var")
    raise FormatError(f"{path}: no 2-D or 3-D numeric array found; the file holds: {described}")


def read_mat(path, var: str | None = None, layout: str | None = None) -> Cube:
    path = Path(path)
    arrays, v73 = _variables(path)
    name = _pick(arrays, var, path)
    arr = np.asarray(arrays[name])
    if arr.dtype.kind not in "uifb":
        raise FormatError(f"{path}: variable {name!r} is not numeric ({arr.dtype})")
    if layout is None and LAYOUT_VAR in arrays:
        layout = "".join(chr(int(c)) for c in np.ravel(arrays[LAYOUT_VAR])) \
            if arrays[LAYOUT_VAR].dtype.kind in "ui" else str(np.ravel(arrays[LAYOUT_VAR])[0])
    if arr.ndim == 3 and layout is None:
        layout_arr = to_bands_first(arr, None, f"{path}:{name}")
    else:
        layout_arr = to_bands_first(arr, layout if arr.ndim == 3 else None, f"{path}:{name}")
    wl = None
    for wname in WAVELENGTH_NAMES:
        if wname in arrays and np.size(arrays[wname]) == layout_arr.shape[0]:
            wl = np.ravel(arrays[wname]).astype(np.float64)
            break
    source_dtype = "float32" if arr.dtype == bool else arr.dtype.name
    data, valid = clean(layout_arr, None)
    return Cube(data, wavelengths=wl, wavelength_units="nm" if wl is not None else None,
                valid=valid, source_dtype=source_dtype,
                attrs={"variable": name, "mat_version": "7.3" if v73 else "5"})


def write_mat(cube: Cube, path, force: bool = False, dtype: str | None = None,
              var: str = "cube") -> list[Path]:
    """Write (rows, cols, bands) as ``var`` (+ ``wavelength``) in MATLAB v5 format, or v7.3
    (HDF5) when the array exceeds 2 GB or ``cube.attrs['mat_version'] == '7.3'``."""
    path = Path(path)
    arr = cast_for_writing(cube.data, dtype)
    if cube.valid is not None and arr.dtype.kind == "f":
        arr = arr.copy()
        arr[:, ~cube.valid] = np.nan
    matlab = np.ascontiguousarray(np.moveaxis(arr, 0, -1))
    if cube.bands == 1:
        matlab = matlab[..., 0]
    v73 = matlab.nbytes >= 2**31 or str(cube.attrs.get("mat_version")) == "7.3"
    with atomic_paths([path], force=force) as (tmp,):
        if v73:
            import h5py

            with h5py.File(tmp, "w", userblock_size=512) as f:
                f.create_dataset(var, data=matlab.T)
                if cube.wavelengths is not None:
                    f.create_dataset("wavelength", data=cube.wavelengths[None, :].T)
            with open(tmp, "r+b") as fh:  # MATLAB 7.3 header in the user block
                head = b"MATLAB 7.3 MAT-file, Platform: hsirestore, Created by hsirestore HDF5 schema"
                fh.write(head.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM")
        else:
            import scipy.io as sio

            out = {var: matlab}
            if cube.wavelengths is not None:
                out["wavelength"] = cube.wavelengths.reshape(1, -1)
            if cube.bands > 1:
                out[LAYOUT_VAR] = "bands-last"
            sio.savemat(str(tmp), out, do_compression=True)
    return [path]
