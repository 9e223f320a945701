"""HDF5 cubes through h5py: ``file.h5`` or ``file.h5:/group/dataset``.

Reading: the dataset is the one named, else the only 3-D dataset (preferring the names
cube/img/rad/data); a ``scale`` attribute multiplies the values (the CAVE layout: uint16
with scale 1/4095); wavelengths come from the dataset's attributes (wavelength,
wavelengths, wavelength_nm) or a sibling dataset of those names. Our own files carry a
``layout`` attribute; otherwise the band axis is detected (see io.common). A sibling 2-D
``valid`` dataset (uint8/bool, rows x cols) marks invalid pixels. Nodata is the ``nodata``
attribute, else the netCDF-style ``_FillValue``; wavelength units without a
``wavelength_units`` attribute are nm for ``wavelength_nm``, else guessed from the values.

``read_hdf5`` loads the whole dataset; ``Hdf5File`` reads windows by slicing the dataset
(bounded memory) and ``Hdf5Sink`` writes windows into a chunked, compressed dataset of a
temporary file that ``commit()`` renames onto the target.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsirestore.errors import AmbiguousInputError, FormatError, ShapeError
from hsirestore.io.atomic import StagedFile, atomic_paths, check_writable
from hsirestore.io.common import (band_layout, cast_for_writing, check_block, clean, fill_invalid,
                                  guess_units, invalid_fill)
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


def _open(file: Path, **cache):
    """h5py.File opened read-only (``cache``: h5py chunk-cache options), FormatError else."""
    import h5py

    if not file.exists():
        raise FormatError(f"{file}: file not found")
    try:
        return h5py.File(file, "r", **cache)
    except OSError as e:
        raise FormatError(f"{file}: not a readable HDF5 file ({e})") from e


def _find_dataset(f, file: Path, inner: str | None) -> str:
    """The key (no leading '/') of the dataset named ``inner``, else of the only 3-D dataset
    (else the only 2-D one), preferring the names in PREFERRED when there are several."""
    import h5py

    sets = {}
    f.visititems(lambda n, o: sets.__setitem__(n, o) if isinstance(o, h5py.Dataset) else None)
    if inner is not None:
        key = inner.lstrip("/")
        if key not in sets:
            raise FormatError(f"{file}: no dataset {inner!r}; datasets: "
                              + ", ".join(f"/{k} {sets[k].shape}" for k in sets))
        return key
    cands = [k for k, d in sets.items() if d.ndim == 3] or [k for k, d in sets.items() if d.ndim == 2]
    if not cands:
        raise FormatError(f"{file}: no 2-D or 3-D dataset")
    pref = [k for k in cands if k.split("/")[-1] in PREFERRED]
    if len(cands) > 1 and len(pref) != 1:
        raise AmbiguousInputError(f"{file}: several datasets ({', '.join('/' + c for c in cands)}); "
                                  "name one as FILE.h5:/path or with --var")
    return pref[0] if len(cands) > 1 else cands[0]


@dataclass
class _Described:
    """What the readers need to know about one dataset (the file stays open)."""

    key: str
    ds: Any  # h5py.Dataset
    order: str  # "2-D", "bands-first" or "bands-last" (the stored axis order)
    shape: tuple[int, int, int]  # (bands, rows, cols)
    stored_nodata: float | None  # nodata in the stored units (before the scale)
    scale: float | None
    valid_ds: Any  # the sibling 2-D "valid" dataset of shape (rows, cols), or None
    fields: dict  # Cube keyword arguments except data and valid


def _describe(f, file: Path, inner: str | None, layout: str | None) -> _Described:
    """Locate the dataset and gather its metadata without reading its values."""
    import h5py

    key = _find_dataset(f, file, inner)
    ds = f[key]
    if ds.dtype.kind == "c" or (ds.dtype.names and {"real", "imag"} <= set(ds.dtype.names)):
        raise FormatError(f"{file}:/{key} holds complex data, which is not supported")
    if ds.dtype.kind not in "uifb":
        raise FormatError(f"{file}:/{key} is not numeric ({ds.dtype})")
    attrs = dict(ds.attrs)
    stored_layout = attrs.get("layout")
    if isinstance(stored_layout, bytes):
        stored_layout = stored_layout.decode()
    order = band_layout(tuple(ds.shape), layout or stored_layout, f"{file}:/{key}")
    if order == "2-D":
        shape = (1, *ds.shape)
    elif order == "bands-first":
        shape = tuple(ds.shape)
    else:
        shape = (ds.shape[2], ds.shape[0], ds.shape[1])
    shape = tuple(int(v) for v in shape)
    bands = shape[0]

    parent = ds.parent
    wl = wl_key = None
    for k in WL_KEYS:
        if k in attrs:
            wl, wl_key = np.ravel(attrs[k]).astype(np.float64), k
            break
        if k in parent and isinstance(parent[k], h5py.Dataset):
            wl, wl_key = np.ravel(parent[k][...]).astype(np.float64), k
            break
    fwhm = np.ravel(attrs["fwhm"]).astype(np.float64) if "fwhm" in attrs else None
    valid_ds = None
    if "valid" in parent and key.split("/")[-1] != "valid":
        cand = parent["valid"]
        if isinstance(cand, h5py.Dataset) and cand.ndim == 2 and tuple(cand.shape) == shape[1:]:
            valid_ds = cand

    source_dtype = ds.dtype.name
    nodata_key = next((k for k in ("nodata", "_FillValue") if k in attrs), None)
    stored_nodata = float(np.ravel(attrs[nodata_key])[0]) if nodata_key else None
    nodata = stored_nodata
    scale = None
    extra = {}
    if "scale" in attrs:
        # scaled values are no longer the stored integer counts: report them as float32
        scale = float(np.ravel(attrs["scale"])[0])
        extra = {"stored_dtype": source_dtype, "scale": scale}
        if nodata is not None:
            nodata = float(np.float32(nodata) * np.float32(scale))
        source_dtype = "float32"
    if wl is not None and wl.size != bands:
        wl = None
    if fwhm is not None and fwhm.size != bands:
        fwhm = None

    def text(k):
        v = attrs.get(k)
        return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)

    transform = tuple(np.ravel(attrs["transform"]).tolist()) if "transform" in attrs else None
    names = json.loads(text("band_names")) if "band_names" in attrs else None
    units = guess_units(wl, text("wavelength_units") or ("nm" if wl_key == "wavelength_nm" else None))
    fields = dict(wavelengths=wl, wavelength_units=units, fwhm=fwhm, nodata=nodata, crs=text("crs"),
                  transform=transform, band_names=names, source_dtype=source_dtype,
                  attrs={"dataset": "/" + key, **extra})
    return _Described(key=key, ds=ds, order=order, shape=shape, stored_nodata=stored_nodata,
                      scale=scale, valid_ds=valid_ds, fields=fields)


def read_hdf5(path, var: str | None = None, layout: str | None = None) -> Cube:
    file, inner = split_path(path)
    with _open(file) as f:
        d = _describe(f, file, inner or var, layout)
        arr = d.ds[...]
        stored_valid = d.valid_ds[...].astype(bool) if d.valid_ds is not None else None
    data = arr[None] if d.order == "2-D" else (arr if d.order == "bands-first" else np.moveaxis(arr, -1, 0))
    data = data.astype(np.float32)
    data, valid = clean(data, d.stored_nodata)  # nodata is in the stored units
    if d.scale is not None:
        data = data * np.float32(d.scale)
    if stored_valid is not None:
        valid = stored_valid if valid is None else (valid & stored_valid)
        valid = None if valid.all() else valid
    return Cube(data, valid=valid, **d.fields)


def _next_prime(n: int) -> int:
    n = max(int(n), 3) | 1
    while any(n % p == 0 for p in range(3, int(n ** 0.5) + 1, 2)):
        n += 2
    return n


def _chunk_cache(nbytes: int, chunk_bytes: int) -> dict:
    """h5py.File chunk-cache options holding ``nbytes`` (slots ~ 100 x the chunks that fit)."""
    slots = _next_prime(min(1_000_000, 100 * max(1, nbytes // max(1, chunk_bytes))))
    return dict(rdcc_nbytes=int(nbytes), rdcc_nslots=slots)


_READ_CACHE = 64 << 20  # bytes of decompressed chunks kept by a windowed reader


class Hdf5File:
    """Windowed reader over one HDF5 dataset (kept open; close() when done).

    ``shape`` is (bands, rows, cols); ``meta`` a Cube with the metadata and a (bands, 1, 1)
    placeholder; ``window()`` returns float32 (bands, h, w) with the ``scale`` attribute
    applied, NaN/Inf as stored, and NaN where the sibling ``valid`` dataset is 0.
    """

    def __init__(self, path, var: str | None = None, layout: str | None = None):
        file, inner = split_path(path)
        self.path = file
        self.f = _open(file, **_chunk_cache(_READ_CACHE, 1 << 20))
        try:
            d = _describe(self.f, file, inner or var, layout)
        except BaseException:
            self.f.close()
            raise
        self._d = d
        self.shape = d.shape
        self.meta = Cube(np.zeros((d.shape[0], 1, 1), np.float32), **d.fields)

    def window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """float32 (bands, r1-r0, c1-c0)."""
        d = self._d
        if d.order == "2-D":
            out = d.ds[r0:r1, c0:c1].astype(np.float32)[None]
        elif d.order == "bands-first":
            out = d.ds[:, r0:r1, c0:c1].astype(np.float32)
        else:
            out = np.ascontiguousarray(np.moveaxis(d.ds[r0:r1, c0:c1, :], -1, 0), dtype=np.float32)
        if d.scale is not None:
            out *= np.float32(d.scale)
        if d.valid_ds is not None:
            ok = d.valid_ds[r0:r1, c0:c1].astype(bool)
            if not ok.all():
                out[:, ~ok] = np.nan
        return out

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()


def _valid_key(key: str) -> str | None:
    """Where the valid mask of dataset ``key`` goes: a sibling named "valid" (what the
    readers look for); None when the dataset itself is called "valid"."""
    if key.split("/")[-1] == "valid":
        return None
    return posixpath.join(posixpath.dirname(key), "valid")


def _write_attrs(ds, meta: Cube) -> None:
    """The attributes write_hdf5 and Hdf5Sink store on the data set."""
    ds.attrs["layout"] = "bands-first"
    if meta.wavelengths is not None:
        ds.attrs["wavelength"] = meta.wavelengths
    if meta.wavelength_units:
        ds.attrs["wavelength_units"] = meta.wavelength_units
    if meta.fwhm is not None:
        ds.attrs["fwhm"] = meta.fwhm
    if meta.nodata is not None:
        ds.attrs["nodata"] = meta.nodata
    if meta.crs:
        ds.attrs["crs"] = meta.crs
    if meta.transform is not None:
        ds.attrs["transform"] = np.asarray(meta.transform)
    if meta.band_names:
        ds.attrs["band_names"] = json.dumps(meta.band_names)
    for k, v in meta.attrs.items():
        if isinstance(v, (str, int, float)):
            ds.attrs[f"attr_{k}"] = v


def write_hdf5(cube: Cube, path, force: bool = False, dtype: str | None = None) -> list[Path]:
    import h5py

    file, inner = split_path(path)
    key = (inner or "cube").lstrip("/")
    # invalid pixels as Hdf5Sink writes them: nodata (else NaN / 0) and False in "valid"
    data, bad = fill_invalid(cube.data, invalid_fill(cube.nodata, dtype or "float32"), cube.valid,
                             dtype=dtype, nodata=cube.nodata)
    arr = cast_for_writing(data, dtype)
    with atomic_paths([file], force=force) as (tmp,):
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset(key, data=arr, chunks=True, compression="gzip", compression_opts=4)
            _write_attrs(ds, cube)
            vkey = _valid_key(key)
            if bad.any() and vkey is not None:
                f.create_dataset(vkey, data=(~bad).astype(np.uint8), compression="gzip")
    return [file]


class Hdf5Sink:
    """Incremental HDF5 writer: windows go into a chunked, gzip-compressed dataset of a
    temporary file beside the target; ``commit()`` adds the attributes and renames it.

    Pixels with a non-finite value in any band are recorded as invalid in a sibling
    ``valid`` dataset (created when the first one arrives) and written as ``meta.nodata``
    when there is one (else NaN in float outputs, 0 in integer ones).

    Chunks are (<=32 bands, <=16 rows, <=256 cols); the chunk cache holds about two rows of
    chunks across the whole width, so the raster-ordered writes of the tiled engine
    compress each chunk once. Memory: about bands x cols x 128 bytes (capped at 1 GiB).
    """

    _CACHE_CAP = 1 << 30

    def __init__(self, path, meta: Cube, shape, force: bool = False, dtype: str | None = None):
        import h5py

        file, inner = split_path(path)
        self.path = file
        self.key = (inner or "cube").lstrip("/")
        if not self.key:
            raise FormatError(f"{path}: empty dataset name")
        check_writable([file], force)
        self.force = force
        self.shape = tuple(int(v) for v in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ShapeError(f"cannot create an HDF5 cube of shape {self.shape}")
        self.meta = meta
        self.dtype = np.dtype(dtype or "float32")
        cast_for_writing(np.zeros((1, 1, 1), np.float32), self.dtype.name)  # unsupported -> error now
        bands, rows, cols = self.shape
        self.chunks = (min(bands, 32), min(rows, 16), min(cols, 256))
        chunk_bytes = int(np.prod(self.chunks)) * self.dtype.itemsize
        n_col_chunks = -(-cols // self.chunks[2])
        n_band_chunks = -(-bands // self.chunks[0])
        cache = min(self._CACHE_CAP, max(8 << 20, 2 * n_col_chunks * n_band_chunks * chunk_bytes))
        # the value written for invalid pixels (None: leave NaN/Inf as they are)
        self._fill = invalid_fill(meta.nodata, self.dtype)
        self._nodata = meta.nodata
        self._vkey = _valid_key(self.key)
        self._valid = None
        # w0=1: chunks that were written whole leave the cache first, partial ones stay
        self.stage = StagedFile(file, force, lambda tmp: h5py.File(
            tmp, "x", rdcc_w0=1.0, **_chunk_cache(cache, chunk_bytes)))
        self.f = self.stage.f
        with self.stage.guard():
            self.ds = self.f.create_dataset(self.key, shape=self.shape, dtype=self.dtype,
                                            chunks=self.chunks, compression="gzip", compression_opts=4)
            if meta.valid is not None and tuple(meta.valid.shape) == self.shape[1:] and self._vkey:
                self._create_valid(meta.valid)

    def _create_valid(self, data=None) -> None:
        rows, cols = self.shape[1:]
        ch = (min(rows, 256), min(cols, 256))
        if data is None:
            self._valid = self.f.create_dataset(self._vkey, shape=(rows, cols), dtype=np.uint8, chunks=ch,
                                                fillvalue=1, compression="gzip")
        else:
            self._valid = self.f.create_dataset(self._vkey, data=np.asarray(data, np.uint8), chunks=ch,
                                                fillvalue=1, compression="gzip")

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        """Write a float32 block (bands, h, w) with its top-left corner at (r0, c0)."""
        block = check_block(self.shape, r0, c0, block)
        _, h, w = block.shape
        block, bad = fill_invalid(block, self._fill, dtype=self.dtype, nodata=self._nodata)  # never modifies the caller's array
        if bad.any():
            if self._vkey is not None:
                if self._valid is None:
                    self._create_valid()
                win = (slice(r0, r0 + h), slice(c0, c0 + w))
                self._valid[win] = self._valid[win] & (~bad).astype(np.uint8)
        self.ds[:, r0:r0 + h, c0:c0 + w] = cast_for_writing(block, self.dtype.name)

    def commit(self) -> None:
        """Write the attributes, close the temporary file and rename it onto the target."""
        with self.stage.guard():  # any failure (or Ctrl-C) leaves no temporary file behind
            _write_attrs(self.ds, self.meta)
        self.stage.publish()

    @property
    def tmp(self) -> Path | None:
        return self.stage.tmp

    def abort(self) -> None:
        """Close and remove the temporary file (the target is left as it was)."""
        stage = getattr(self, "stage", None)
        if stage is not None:
            stage.discard()
