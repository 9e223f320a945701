"""MATLAB .mat files: v5 through scipy.io (read whole), v7.3 (HDF5-based) through h5py, read
window by window (axes reversed: :class:`MatV73File`).

The cube variable is found automatically when the file holds exactly one 3-D numeric array
(or, failing that, exactly one 2-D array, e.g. CASSI masks and measurements); otherwise it
must be named with ``var``. Wavelengths come from a variable named wavelength(s), wl or
bands when present (units: nm for wavelength_nm, else guessed from the values). MATLAB
arrays are (rows, cols, bands); the band axis is ``layout`` when given (or the one our own
files record), else the first or last axis whose length matches the wavelength vector, else
the rule of :func:`hsirestore.io.common.to_bands_first`. Complex variables are refused.

Nodata: a scalar numeric variable named ``nodata`` is the cube's nodata value (what the
writers store when the cube has one; it is never taken for the cube variable). Outputs name
the cube variable after the variable the input was read from (``Cube.attrs['variable']``)
unless the caller names one, else ``cube``: see :func:`output_variable`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from hsirestore.errors import AmbiguousInputError, FormatError, OptionError
from hsirestore.io.atomic import atomic_paths
from hsirestore.io.common import (band_layout, cast_for_writing, clean, fill_invalid, guess_units,
                                  invalid_fill, to_bands_first)
from hsirestore.io.cube import Cube

WAVELENGTH_NAMES = ("wavelength", "wavelengths", "wavelength_nm", "wl", "bands")
PREFERRED = ("cube", "img", "rad", "data", "meas_real", "meas", "mask", "hsi", "x")
LAYOUT_VAR = "hsirestore_layout"
NODATA_VAR = "nodata"
#: names that outputs use for metadata, so never for the cube variable
_METADATA_VARS = frozenset({*WAVELENGTH_NAMES, LAYOUT_VAR, NODATA_VAR})
#: MATLAB keywords (``iskeyword``): not valid variable names
_MATLAB_KEYWORDS = frozenset({
    "break", "case", "catch", "classdef", "continue", "else", "elseif", "end", "for",
    "function", "global", "if", "otherwise", "parfor", "persistent", "return", "spmd",
    "switch", "try", "while"})


def is_matlab_name(name) -> bool:
    """Whether ``name`` is a valid MATLAB variable name (``isvarname``: a letter, then up to
    62 letters, digits or underscores, not a keyword)."""
    return (isinstance(name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", name) is not None
            and name not in _MATLAB_KEYWORDS)


def output_variable(attrs: dict, var: str | None = None) -> str:
    """The name of the cube variable in a .mat output: ``var`` when given (OptionError when it
    is not a valid MATLAB name or one the outputs use for metadata), else the variable the
    cube was read from (``attrs['variable']``, set by the .mat readers and kept by commands
    that transform their input, e.g. denoise and degrade) when it is a valid MATLAB name,
    else ``cube``."""
    if var is not None:
        if not is_matlab_name(var) or var in _METADATA_VARS:
            raise OptionError(f"cannot name the MATLAB variable {var!r}: a variable name is a letter "
                              "followed by letters, digits or underscores (at most 63), not a "
                              f"keyword and not one of {', '.join(sorted(_METADATA_VARS))}")
        return var
    name = (attrs or {}).get("variable")
    return name if is_matlab_name(name) and name not in _METADATA_VARS else "cube"


def is_v73(path: Path) -> bool:
    """True for an HDF5-based (v7.3) .mat file, False for v4/v5 (raises FormatError when the
    file is neither)."""
    import h5py

    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    return bool(h5py.is_hdf5(str(path)))


def _variables_v5(path: Path) -> dict[str, np.ndarray]:
    """name -> array (MATLAB axis order) of a v4/v5 file (read whole by scipy)."""
    import scipy.io as sio

    try:
        raw = sio.loadmat(str(path))
    except Exception as e:
        raise FormatError(f"{path}: not a readable MATLAB file ({e})") from e
    return {k: v for k, v in raw.items() if not k.startswith("__")}


def _datasets_v73(f) -> dict:
    """name -> h5py.Dataset of an open v7.3 file (values not read; MATLAB's internal
    ``#refs#``/``#subsystem#`` groups skipped)."""
    import h5py

    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
            out[name] = obj
    f.visititems(visit)
    return out


def _shape(v) -> tuple:
    """The MATLAB shape of a v5 array or of a v7.3 dataset (h5py sees MATLAB arrays reversed)."""
    return tuple(v.shape) if isinstance(v, np.ndarray) else tuple(v.shape[::-1])


def list_variables(path) -> dict[str, tuple]:
    """name -> MATLAB shape, without reading v7.3 values."""
    path = Path(path)
    if is_v73(path):
        import h5py

        with h5py.File(path, "r") as f:
            return {k: _shape(d) for k, d in _datasets_v73(f).items()}
    return {k: v.shape for k, v in _variables_v5(path).items() if isinstance(v, np.ndarray)}


def _is_complex(v) -> bool:
    """True for a complex array (v5) or dataset (v7.3 stores a real/imag compound type)."""
    dt = v.dtype
    return dt.kind == "c" or (not isinstance(v, np.ndarray) and dt.names is not None
                              and {"real", "imag"} <= set(dt.names))


def _complex_error(path: Path, name: str) -> FormatError:
    return FormatError(f"{path}: variable {name!r} holds complex data, which is not supported")


def _pick(arrays: dict, var: str | None, path: Path) -> str:
    """The cube variable among ``arrays`` (name -> ndarray or h5py.Dataset): only 2-D/3-D
    arrays with every axis longer than 1 are candidates, so the scalar ``nodata`` (and the
    wavelength vector) never is."""
    arrays = {k: v for k, v in arrays.items() if hasattr(v, "shape") and hasattr(v, "dtype")}
    cplx = {k: _shape(v) for k, v in arrays.items()
            if _is_complex(v) and len(v.shape) in (2, 3) and min(v.shape) > 1}
    numeric = {k: _shape(v) for k, v in arrays.items()
               if v.dtype.kind in "uifb" and len(v.shape) in (2, 3) and min(v.shape) > 1}
    described = ", ".join(f"{k} {'x'.join(map(str, _shape(v)))}" for k, v in arrays.items()) or "(nothing)"
    if var is not None:
        if var not in arrays:
            raise FormatError(f"{path}: no variable {var!r}; the file holds: {described}")
        if _is_complex(arrays[var]):
            raise _complex_error(path, var)
        return var
    for ndim in (3, 2):
        cands = [k for k, shp in numeric.items() if len(shp) == ndim and k not in WAVELENGTH_NAMES]
        if len(cands) == 1:
            return cands[0]
        if len(cands) > 1:
            raise AmbiguousInputError(
                f"{path}: several {ndim}-D arrays ({', '.join(sorted(cands))}); choose one with --var")
        complex_cands = sorted(k for k, shp in cplx.items() if len(shp) == ndim)
        if complex_cands:
            raise _complex_error(path, complex_cands[0])
    raise FormatError(f"{path}: no 2-D or 3-D numeric array found; the file holds: {described}")


def _layout_from_file(arrays: dict, layout: str | None) -> str | None:
    if layout is None and LAYOUT_VAR in arrays:
        v = np.asarray(arrays[LAYOUT_VAR][()])
        return "".join(chr(int(c)) for c in np.ravel(v)) if v.dtype.kind in "ui" else str(np.ravel(v)[0])
    return layout


def _vector_lengths(arrays: dict) -> set[int]:
    """Lengths of the real wavelength vectors (n, 1 x n or n x 1) among ``arrays``."""
    out = set()
    for wname in WAVELENGTH_NAMES:
        v = arrays.get(wname)
        if v is None or not hasattr(v, "shape") or getattr(v, "dtype", np.dtype("O")).kind not in "uif":
            continue
        sizes = [int(n) for n in v.shape if n != 1]
        if len(sizes) == 1 and sizes[0] > 1:
            out.add(sizes[0])
    return out


def _order(arrays: dict, mshape: tuple, layout: str | None, source: str) -> str:
    """The :func:`band_layout` of a variable of MATLAB shape ``mshape``: ``layout``, or the one
    our files record, or the end axis whose length matches a wavelength vector (when only one
    does), else the smallest-axis rule (AmbiguousInputError when that cannot decide)."""
    if len(mshape) != 3:
        return band_layout(mshape, None, source)
    layout = _layout_from_file(arrays, layout)
    if layout is None:
        lengths = _vector_lengths(arrays)
        ends = [lay for lay, axis in (("bands-first", 0), ("bands-last", 2)) if mshape[axis] in lengths]
        if len(ends) == 1:
            layout = ends[0]
    return band_layout(mshape, layout, source)


def _wavelengths(arrays: dict, bands: int) -> tuple[np.ndarray | None, str | None]:
    """(wavelengths, units) from the first wavelength variable with ``bands`` values."""
    for wname in WAVELENGTH_NAMES:
        v = arrays.get(wname)
        if v is not None and int(np.prod(v.shape)) == bands and v.dtype.kind in "uif":
            wl = np.ravel(np.asarray(v[()])).astype(np.float64)
            return wl, guess_units(wl, "nm" if wname == "wavelength_nm" else None)
    return None, None


def _nodata(arrays: dict, name: str) -> float | None:
    """The value of a scalar numeric ``nodata`` variable (None when there is none, or when it
    is the variable being read)."""
    v = arrays.get(NODATA_VAR)
    if (name == NODATA_VAR or v is None or not hasattr(v, "shape")
            or getattr(v, "dtype", np.dtype("O")).kind not in "uif" or int(np.prod(v.shape)) != 1):
        return None
    return float(np.ravel(np.asarray(v[()]))[0])


def _stored_nodata(nodata: float | None, dtype: np.dtype) -> float | None:
    """The ``nodata`` variable written with a cube: the cube's nodata, which the writers put in
    invalid pixels (see :func:`hsirestore.io.common.invalid_fill`); None without one, and for
    a NaN nodata in integer outputs (those pixels are written as 0, which is no nodata)."""
    if nodata is None or (dtype.kind in "ui" and not np.isfinite(nodata)):
        return None
    return float(nodata)


class MatV73File:
    """Windowed reader over one variable of a v7.3 (HDF5) .mat file, kept open.

    MATLAB stores arrays column-major, so h5py sees a (rows, cols, bands) variable as a
    (bands, cols, rows) dataset; ``window()`` slices the dataset and transposes only the
    window. ``shape`` is (bands, rows, cols); ``meta`` a Cube with the metadata and a
    (bands, 1, 1) placeholder (``nodata`` from a scalar ``nodata`` variable); windows are
    float32 with NaN/Inf and nodata values as stored.
    """

    def __init__(self, path, var: str | None = None, layout: str | None = None):
        import h5py

        self.path = Path(path)
        try:
            self.f = h5py.File(self.path, "r")
        except OSError as e:
            raise FormatError(f"{self.path}: not a readable MATLAB file ({e})") from e
        try:
            arrays = _datasets_v73(self.f)
            name = _pick(arrays, var, self.path)
            ds = arrays[name]
            if ds.dtype.kind not in "uifb":
                raise FormatError(f"{self.path}: variable {name!r} is not numeric ({ds.dtype})")
            mshape = _shape(ds)
            self.order = _order(arrays, mshape, layout, f"{self.path}:{name}")
            if self.order == "2-D":
                self.shape = (1, *mshape)
            elif self.order == "bands-first":
                self.shape = tuple(mshape)
            else:
                self.shape = (mshape[2], mshape[0], mshape[1])
            self.shape = tuple(int(v) for v in self.shape)
            wl, units = _wavelengths(arrays, self.shape[0])
            nodata = _nodata(arrays, name)
        except BaseException:
            self.f.close()
            raise
        self.ds = ds
        source_dtype = "float32" if ds.dtype == bool else ds.dtype.name
        self.meta = Cube(np.zeros((self.shape[0], 1, 1), np.float32), wavelengths=wl,
                         wavelength_units=units, source_dtype=source_dtype, nodata=nodata,
                         attrs={"variable": name, "mat_version": "7.3"})

    def window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """float32 (bands, r1 - r0, c1 - c0)."""
        if self.order == "2-D":  # dataset (cols, rows)
            out = self.ds[c0:c1, r0:r1].T[None]
        elif self.order == "bands-last":  # dataset (bands, cols, rows)
            out = self.ds[:, c0:c1, r0:r1].transpose(0, 2, 1)
        else:  # MATLAB (bands, rows, cols) -> dataset (cols, rows, bands)
            out = self.ds[c0:c1, r0:r1, :].transpose(2, 1, 0)
        return np.ascontiguousarray(out, dtype=np.float32)

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()


def read_mat(path, var: str | None = None, layout: str | None = None) -> Cube:
    path = Path(path)
    if is_v73(path):
        f = MatV73File(path, var, layout)
        try:
            data, valid = clean(f.window(0, f.shape[1], 0, f.shape[2]), f.meta.nodata)
        finally:
            f.close()
        return f.meta.with_data(data, valid=valid)
    arrays = _variables_v5(path)
    name = _pick(arrays, var, path)
    arr = np.asarray(arrays[name])
    if arr.dtype.kind not in "uifb":
        raise FormatError(f"{path}: variable {name!r} is not numeric ({arr.dtype})")
    order = _order(arrays, arr.shape, layout, f"{path}:{name}")
    layout_arr = to_bands_first(arr, None if order == "2-D" else order, f"{path}:{name}")
    wl, units = _wavelengths(arrays, layout_arr.shape[0])
    source_dtype = "float32" if arr.dtype == bool else arr.dtype.name
    nodata = _nodata(arrays, name)
    data, valid = clean(layout_arr, nodata)
    return Cube(data, wavelengths=wl, wavelength_units=units, nodata=nodata,
                valid=valid, source_dtype=source_dtype,
                attrs={"variable": name, "mat_version": "5"})


#: numpy dtype name -> MATLAB class (the ``MATLAB_class`` attribute of v7.3 variables)
_MATLAB_CLASS = {"float32": "single", "float64": "double", "uint8": "uint8", "int8": "int8",
                 "uint16": "uint16", "int16": "int16", "uint32": "uint32", "int32": "int32",
                 "uint64": "uint64", "int64": "int64", "bool": "logical"}
#: arrays from this size on must be v7.3 (v5 cannot hold them)
V73_BYTES = 2**31


def wants_v73(nbytes: int, attrs: dict) -> bool:
    """Whether a cube is written as MATLAB v7.3: when v5 cannot hold it, or it came from v7.3."""
    return nbytes >= V73_BYTES or str(attrs.get("mat_version")) == "7.3"


def _v73_variable(f, name: str, data=None, shape=None, dtype=None, **kw):
    """A MATLAB variable in an open v7.3 file: the dataset (in HDF5, i.e. reversed axis
    order) with its ``MATLAB_class`` attribute, so MATLAB's ``load`` accepts it."""
    if data is not None:
        ds = f.create_dataset(name, data=data, **kw)
    else:
        ds = f.create_dataset(name, shape=shape, dtype=dtype, **kw)
    ds.attrs["MATLAB_class"] = np.bytes_(_MATLAB_CLASS.get(ds.dtype.name, "double"))
    return ds


def _v73_char(f, name: str, text: str) -> None:
    """A MATLAB char row vector (uint16 codes, MATLAB_class 'char')."""
    ds = f.create_dataset(name, data=np.array([[ord(ch)] for ch in text], np.uint16))
    ds.attrs["MATLAB_class"] = np.bytes_("char")
    ds.attrs["MATLAB_int_decode"] = np.int32(2)


def _v73_header(path: Path) -> None:
    """The 128-byte MATLAB 7.3 header in the HDF5 user block (text, subsystem offset,
    version 0x0200, endian indicator 'IM')."""
    with open(path, "r+b") as fh:
        head = b"MATLAB 7.3 MAT-file, Platform: hsirestore, Created by hsirestore HDF5 schema 1.00 ."
        fh.write(head.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM")


def write_mat(cube: Cube, path, force: bool = False, dtype: str | None = None,
              var: str | None = None) -> list[Path]:
    """Write (rows, cols, bands) as one variable (+ ``wavelength``, ``nodata``) in MATLAB v5
    format, or v7.3 (HDF5) when the array exceeds 2 GB or ``cube.attrs['mat_version'] == '7.3'``.
    The variable is ``var``, else the one the cube was read from, else ``cube``
    (:func:`output_variable`).

    Invalid pixels (``cube.valid`` False or a non-finite value in any band) are written as the
    cube's nodata when it has one (stored as the scalar variable ``nodata``, which the readers
    take back), else as NaN in float outputs and 0 in integer ones, as :class:`MatV73Sink`
    does."""
    path = Path(path)
    var = output_variable(cube.attrs, var)
    out_dtype = np.dtype(dtype or "float32")
    fill = invalid_fill(cube.nodata, out_dtype)
    nodata = _stored_nodata(cube.nodata, out_dtype)
    data, _ = fill_invalid(cube.data, fill, cube.valid, dtype=out_dtype, nodata=cube.nodata)
    arr = cast_for_writing(data, dtype)
    matlab = np.ascontiguousarray(np.moveaxis(arr, 0, -1))
    if cube.bands == 1:
        matlab = matlab[..., 0]
    v73 = wants_v73(matlab.nbytes, cube.attrs)
    with atomic_paths([path], force=force) as (tmp,):
        if v73:
            import h5py

            with h5py.File(tmp, "w", userblock_size=512) as f:
                _v73_variable(f, var, data=matlab.T)
                if cube.wavelengths is not None:
                    _v73_variable(f, "wavelength", data=np.asarray(cube.wavelengths, np.float64)[None, :].T)
                if cube.bands > 1:
                    _v73_char(f, LAYOUT_VAR, "bands-last")
                if nodata is not None:
                    _v73_variable(f, NODATA_VAR, data=np.array([[nodata]], np.float64))
            _v73_header(tmp)
        else:
            import scipy.io as sio

            out = {var: matlab}
            if cube.wavelengths is not None:
                out["wavelength"] = cube.wavelengths.reshape(1, -1)
            if cube.bands > 1:
                out[LAYOUT_VAR] = "bands-last"
            if nodata is not None:
                out[NODATA_VAR] = np.array([[nodata]], np.float64)
            sio.savemat(str(tmp), out, do_compression=True)
    return [path]


class MatV73Sink:
    """Incremental MATLAB v7.3 writer (for cubes too large to hold in memory): windows go
    straight into a chunked, gzip-compressed variable (rows, cols, bands) of a temporary file
    beside the target, named as :func:`write_mat` names it; ``commit()`` adds the header and
    renames it.

    Invalid pixels (a non-finite value in any band) are written as the cube's nodata when it
    has one (stored as the scalar variable ``nodata``), else as NaN in float outputs and 0 in
    integer ones, as :func:`write_mat` does.
    """

    def __init__(self, path, meta: Cube, shape, force: bool = False, dtype: str | None = None,
                 var: str | None = None):
        import h5py

        from hsirestore.errors import ShapeError
        from hsirestore.io.atomic import StagedFile, check_writable
        from hsirestore.io.common import invalid_fill

        self.path = Path(path)
        var = output_variable(meta.attrs, var)
        check_writable([self.path], force)
        self.shape = tuple(int(v) for v in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ShapeError(f"cannot create a MATLAB cube of shape {self.shape}")
        self.dtype = np.dtype(dtype or "float32")
        cast_for_writing(np.zeros((1, 1, 1), np.float32), self.dtype.name)  # unsupported -> error now
        self._fill = invalid_fill(meta.nodata, self.dtype)
        self._nodata = meta.nodata
        nodata = _stored_nodata(meta.nodata, self.dtype)
        bands, rows, cols = self.shape
        self.stage = StagedFile(self.path, force, lambda tmp: h5py.File(tmp, "x", userblock_size=512))
        f = self.stage.f
        with self.stage.guard():
            # MATLAB (rows, cols, bands) is (bands, cols, rows) in HDF5
            self.ds = _v73_variable(f, var, shape=(bands, cols, rows), dtype=self.dtype,
                                    chunks=(min(bands, 32), min(cols, 256), min(rows, 16)),
                                    compression="gzip", compression_opts=4)
            if meta.wavelengths is not None and len(meta.wavelengths) == bands:
                _v73_variable(f, "wavelength", data=np.asarray(meta.wavelengths, np.float64)[None, :].T)
            if bands > 1:
                _v73_char(f, LAYOUT_VAR, "bands-last")
            if nodata is not None:
                _v73_variable(f, NODATA_VAR, data=np.array([[nodata]], np.float64))

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        """Write a float32 block (bands, h, w) with its top-left corner at (r0, c0)."""
        from hsirestore.io.common import check_block, fill_invalid

        block = check_block(self.shape, r0, c0, block)
        _, h, w = block.shape
        block, _ = fill_invalid(block, self._fill, dtype=self.dtype, nodata=self._nodata)
        self.ds[:, c0:c0 + w, r0:r0 + h] = cast_for_writing(block, self.dtype.name).transpose(0, 2, 1)

    def commit(self) -> None:
        """Close the temporary file, write the MATLAB header and rename it onto the target."""
        self.stage.publish(finish=_v73_header)

    def abort(self) -> None:
        """Close and remove the temporary file (the target is left as it was)."""
        self.stage.discard()
