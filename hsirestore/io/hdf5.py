"""HDF5 cubes through h5py: ``file.h5`` or ``file.h5:/group/dataset``.

Reading: the dataset is the one named, else the only 3-D dataset (preferring the names
cube/img/rad/data); a ``scale`` attribute multiplies the values (the CAVE layout: uint16
with scale 1/4095); wavelengths come from the dataset's attributes (wavelength,
wavelengths, wavelength_nm) or a sibling dataset of those names. Our own files carry a
``layout`` attribute; otherwise the band axis is detected (see io.common).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hsirestore.errors import AmbiguousInputError, FormatError
from hsirestore.io.atomic import atomic_paths
from hsirestore.io.common import cast_for_writing, clean, to_bands_first
from hsirestore.io.cube import Cube

WL_KEYS = ("wavelength", "wavelengths", "wavelength_nm")
PREFERRED = ("cube", "img", "rad", "data", "meas_real", "mask")


def split_path(path) -> tuple[Path, str | None]:
    s = str(path)
    for suf in (".h5:", ".hdf5:", ".he5:", ".hdf:"):
        i = s.lower().find(suf)
        if i >= 0:
            return Path(s[: i + len(suf) - 1]), s[i + len(suf):] or None
    return Path(s), None


def read_hdf5(path, var: str | None = None, layout: str | None = None) -> Cube:
    import h5py

    file, inner = split_path(path)
    inner = inner or var
    if not file.exists():
        raise FormatError(f"{file}: file not found")
    try:
        f = h5py.File(file, "r")
    except OSError as e:
        raise FormatError(f"{file}: not a readable HDF5 file ({e})") from e
    with f:
        sets = {}
        f.visititems(lambda n, o: sets.__setitem__(n, o) if isinstance(o, h5py.Dataset) else None)
        if inner is not None:
            key = inner.lstrip("/")
            if key not in sets:
                raise FormatError(f"{file}: no dataset {inner!r}; datasets: "
                                  + ", ".join(f"/{k} {sets[k].shape}" for k in sets))
        else:
            cands = [k for k, d in sets.items() if d.ndim == 3] or [k for k, d in sets.items() if d.ndim == 2]
            if not cands:
                raise FormatError(f"{file}: no 2-D or 3-D dataset")
            pref = [k for k in cands if k.split("/")[-1] in PREFERRED]
            if len(cands) > 1 and len(pref) != 1:
                raise AmbiguousInputError(f"{file}: several datasets ({', '.join('/' + c for c in cands)}); "
                                          "name one as FILE.h5:/path or with --var")
            key = pref[0] if len(cands) > 1 else cands[0]
        ds = sets[key]
        arr = ds[...]
        attrs = dict(ds.attrs)
        parent = ds.parent
        wl = None
        for k in WL_KEYS:
            if k in attrs:
                wl = np.ravel(attrs[k]).astype(np.float64)
                break
            if k in parent and isinstance(parent[k], h5py.Dataset):
                wl = np.ravel(parent[k][...]).astype(np.float64)
                break
        fwhm = np.ravel(attrs["fwhm"]).astype(np.float64) if "fwhm" in attrs else None
        stored_valid = None
        if "valid" in parent and key.split("/")[-1] != "valid" and parent["valid"].ndim == 2:
            stored_valid = parent["valid"][...].astype(bool)
    if arr.dtype.kind not in "uifb":
        raise FormatError(f"{file}:/{key} is not numeric ({arr.dtype})")
    stored_layout = attrs.get("layout")
    if isinstance(stored_layout, bytes):
        stored_layout = stored_layout.decode()
    data = to_bands_first(arr, layout or stored_layout, f"{file}:/{key}")
    source_dtype = arr.dtype.name
    data = data.astype(np.float32)
    nodata = float(np.ravel(attrs["nodata"])[0]) if "nodata" in attrs else None
    data, valid = clean(data, nodata)  # nodata is in the stored units
    extra = {}
    if "scale" in attrs:
        # scaled values are no longer the stored integer counts: report them as float32
        data = data * np.float32(np.ravel(attrs["scale"])[0])
        extra = {"stored_dtype": source_dtype, "scale": float(np.ravel(attrs["scale"])[0])}
        if nodata is not None:
            nodata = float(np.float32(nodata) * np.float32(extra["scale"]))
        source_dtype = "float32"
    if stored_valid is not None and stored_valid.shape == data.shape[1:]:
        valid = stored_valid if valid is None else (valid & stored_valid)
        valid = None if valid.all() else valid
    if wl is not None and wl.size != data.shape[0]:
        wl = None
    if fwhm is not None and fwhm.size != data.shape[0]:
        fwhm = None

    def text(k):
        v = attrs.get(k)
        return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)

    transform = tuple(np.ravel(attrs["transform"]).tolist()) if "transform" in attrs else None
    names = json.loads(text("band_names")) if "band_names" in attrs else None
    return Cube(data, wavelengths=wl, wavelength_units=text("wavelength_units") or ("nm" if wl is not None else None),
                fwhm=fwhm, nodata=nodata, valid=valid, crs=text("crs"), transform=transform,
                band_names=names, source_dtype=source_dtype, attrs={"dataset": "/" + key, **extra})


def write_hdf5(cube: Cube, path, force: bool = False, dtype: str | None = None) -> list[Path]:
    import h5py

    file, inner = split_path(path)
    key = (inner or "cube").lstrip("/")
    arr = cast_for_writing(cube.data, dtype)
    with atomic_paths([file], force=force) as (tmp,):
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(key, data=arr, chunks=True, compression="gzip", compression_opts=4)
            ds.attrs["layout"] = "bands-first"
            if cube.wavelengths is not None:
                ds.attrs["wavelength"] = cube.wavelengths
            if cube.wavelength_units:
                ds.attrs["wavelength_units"] = cube.wavelength_units
            if cube.fwhm is not None:
                ds.attrs["fwhm"] = cube.fwhm
            if cube.nodata is not None:
                ds.attrs["nodata"] = cube.nodata
            if cube.crs:
                ds.attrs["crs"] = cube.crs
            if cube.transform is not None:
                ds.attrs["transform"] = np.asarray(cube.transform)
            if cube.band_names:
                ds.attrs["band_names"] = json.dumps(cube.band_names)
            if cube.valid is not None:
                f.create_dataset("valid", data=cube.valid.astype(np.uint8), compression="gzip")
            for k, v in cube.attrs.items():
                if isinstance(v, (str, int, float)):
                    ds.attrs[f"attr_{k}"] = v
    return [file]
