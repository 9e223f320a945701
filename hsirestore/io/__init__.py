"""Cube I/O (never imports torch): ENVI, GeoTIFF/TIFF, MATLAB .mat (v5, v7.3), HDF5, RGB.

``read_cube`` / ``write_cube`` dispatch on the suffix (and magic bytes where the suffix is
not decisive); ``open_cube`` / ``create_cube`` stream windows for ENVI, GeoTIFF, HDF5 and MATLAB v7.3.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError
from hsirestore.io.cube import ArraySink, ArraySource, Cube, CubeSink, CubeSource
from hsirestore.io.describe import describe_cube
from hsirestore.io.files import (CUBE_KINDS, IMAGE_KINDS, cube_files, cube_suffixes,
                                 refuse_overwriting_inputs)
from hsirestore.io.rgb import read_rgb, write_rgb

__all__ = ["Cube", "CubeSource", "CubeSink", "ArraySource", "ArraySink", "read_cube",
           "write_cube", "open_cube", "create_cube", "read_rgb", "write_rgb", "detect_format",
           "output_paths", "output_dtype", "counts_dtype", "output_dtype_for", "describe_cube",
           "cube_files", "cube_suffixes", "CUBE_KINDS", "IMAGE_KINDS",
           "refuse_overwriting_inputs"]

_SUFFIX = {".hdr": "envi", ".img": "envi", ".dat": "envi", ".raw": "envi", ".bsq": "envi",
           ".bil": "envi", ".bip": "envi", ".tif": "tiff", ".tiff": "tiff", ".mat": "mat",
           ".h5": "hdf5", ".hdf5": "hdf5", ".he5": "hdf5", ".hdf": "hdf5",
           ".png": "rgb", ".jpg": "rgb", ".jpeg": "rgb"}


def _has_georef(file: Path) -> bool:
    """True when the TIFF carries GeoTIFF tags (GeoKeyDirectory / model transform)."""
    try:
        import tifffile

        with tifffile.TiffFile(file) as tf:
            tags = tf.pages[0].tags
            return any(t in tags for t in (33550, 33922, 34264, 34735))
    except Exception:
        return False


def detect_format(path) -> str:
    """'envi', 'geotiff' (a .tif with GeoTIFF tags, or one to be written), 'tiff' (plain
    TIFF), 'mat', 'hdf5' or 'rgb' from the suffix, checked by magic bytes."""
    from hsirestore.io.hdf5 import split_path

    file, _ = split_path(path)
    fmt = _SUFFIX.get(file.suffix.lower())
    if fmt is None and file.exists():
        head = b""
        if file.is_file():
            with open(file, "rb") as fh:  # 8 bytes, not the whole (possibly huge) file
                head = fh.read(8)
        if head.startswith(b"\x89HDF"):
            fmt = "hdf5"
        elif head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            fmt = "tiff"
        elif head.startswith(b"MATLAB"):
            fmt = "mat"
        elif head.startswith(b"ENVI"):
            fmt = "envi"
        else:
            from hsirestore.io.envi import header_path

            if header_path(file).exists():  # a data file beside its header (x.bin + X.HDR)
                fmt = "envi"
    if fmt == "tiff":
        fmt = "geotiff" if not file.is_file() or _has_georef(file) else "tiff"
    if fmt is None:
        raise FormatError(f"{path}: unknown format (supported: ENVI .hdr, GeoTIFF .tif, .mat, "
                          ".h5, and .png/.jpg for RGB)")
    return fmt


def read_cube(path, *, var: str | None = None, layout: str | None = None) -> Cube:
    """Read a cube as float32 (bands, rows, cols) with its metadata."""
    fmt = detect_format(path)
    if fmt == "envi":
        from hsirestore.io.envi import read_envi

        return read_envi(path)
    if fmt in ("tiff", "geotiff"):
        from hsirestore.io.geotiff import read_tiff

        return read_tiff(path, layout)
    if fmt == "mat":
        from hsirestore.io.matfile import read_mat

        if not Path(path).exists():
            raise FormatError(f"{path}: file not found")
        return read_mat(path, var, layout)
    if fmt == "hdf5":
        from hsirestore.io.hdf5 import read_hdf5

        return read_hdf5(path, var, layout)
    return read_rgb(path)


def output_paths(path) -> list[Path]:
    """Every file ``write_cube(path)`` will create (ENVI writes a header and a data file)."""
    from hsirestore.io.hdf5 import split_path

    fmt = detect_format(path)
    if fmt == "envi":
        from hsirestore.io.envi import envi_paths

        return list(envi_paths(Path(path)))
    return [split_path(path)[0]]


def _needed_bytes(fmt: str, shape, dtype: str | None) -> int:
    """Disk space to insist on before writing: the raw size, except half of it for GeoTIFF
    (deflate; libtiff reports a full disk cleanly). HDF5 (and .mat v7.3) get the raw size
    although they are gzip-compressed: float cubes compress little, and HDF5 can crash the
    process when the disk fills up mid-write."""
    raw = int(np.prod([int(v) for v in shape])) * np.dtype(dtype or "float32").itemsize
    return raw // 2 if fmt in ("tiff", "geotiff") else raw


#: data types a format cannot store -> the nearest one it can (ENVI has no int8/float16 codes;
#: GDAL's GeoTIFF has no float16 and int8 only in recent versions)
_WIDER = {"envi": {"int8": "int16", "float16": "float32"},
          "geotiff": {"int8": "int16", "float16": "float32"},
          "tiff": {"int8": "int16", "float16": "float32"}}


def writable_dtype(fmt: str, dtype: str | None) -> str | None:
    """``dtype`` (a numpy name or None) widened to one the format can store."""
    if dtype is None:
        return None
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise FormatError(f"unknown data type {dtype!r}") from None
    return _WIDER.get(fmt, {}).get(name, name)


def counts_dtype(meta, sample) -> str | None:
    """The integer type of the input's counts, or None: the source dtype of ``meta`` (a Cube
    or a source's meta) when it is an integer type (readers that apply a scale, RGB images
    included, report float32) and ``sample`` ((bands, h, w) values as read) holds whole
    numbers only."""
    source_dtype = getattr(meta, "source_dtype", None)
    if not source_dtype or np.dtype(source_dtype).kind not in "ui":
        return None
    v = np.asarray(sample, np.float64)
    v = v[np.isfinite(v)]
    return source_dtype if v.size and np.array_equal(v, np.round(v)) else None


def output_dtype(meta, sample, dst) -> str | None:
    """The integer type to write a result of the cube ``meta`` (a Cube or a source's meta)
    to ``dst`` in, or None for float32: the input's integer type when it held integer counts
    (:func:`counts_dtype`; ``sample`` is a (bands, h, w) sample of the values), or a
    GeoTIFF's stored integer type when its band scales/offsets were applied on reading and
    ``dst`` is a GeoTIFF again (written back as counts with the same scales). Other scaled
    inputs (e.g. CAVE HDF5 with a 'scale' attribute) give fractional values and are written
    as float32."""
    attrs = getattr(meta, "attrs", None) or {}
    stored = attrs.get("stored_dtype")
    if stored and "band_scales" in attrs and np.dtype(stored).kind in "ui":
        try:
            return stored if detect_format(dst) == "geotiff" else None
        except Exception:  # an unknown output format is reported by the writer
            return None
    return counts_dtype(meta, sample)


def output_dtype_for(data: Cube | CubeSource, dst) -> str | None:
    """:func:`output_dtype` for a Cube (sampling every 7th row and column) or a CubeSource
    (sampling its central 128 x 128 window, so a big file is not read whole)."""
    if isinstance(data, Cube):
        return output_dtype(data, data.data[:, ::7, ::7], dst)
    _, h, w = data.shape
    r0, c0 = max(0, h // 2 - 64), max(0, w // 2 - 64)
    return output_dtype(data.meta, data.read_window(r0, min(h, r0 + 128), c0, min(w, c0 + 128)),
                        dst)


def write_cube(cube: Cube, path, *, force: bool = False, dtype: str | None = None,
               var: str | None = None) -> list[Path]:
    """Write atomically by suffix; refuses to overwrite without ``force``. Returns the files.

    ``var`` names the variable of a .mat output (other formats ignore it); None: the variable
    the cube was read from (``cube.attrs['variable']``) when it is a valid MATLAB name, else
    "cube" (:func:`hsirestore.io.matfile.output_variable`)."""
    from hsirestore.io.atomic import check_free_space

    fmt = detect_format(path)
    dtype = writable_dtype(fmt, dtype)
    if fmt != "rgb":
        check_free_space(output_paths(path)[-1], _needed_bytes(fmt, cube.shape, dtype))
    if fmt == "envi":
        from hsirestore.io.envi import write_envi

        return write_envi(cube, path, force, dtype)
    if fmt in ("tiff", "geotiff"):
        from hsirestore.io.geotiff import write_geotiff

        return write_geotiff(cube, path, force, dtype)
    if fmt == "mat":
        from hsirestore.io.matfile import write_mat

        return write_mat(cube, path, force, dtype, var=var)
    if fmt == "hdf5":
        from hsirestore.io.hdf5 import write_hdf5

        return write_hdf5(cube, path, force, dtype)
    if cube.bands != 3:
        raise FormatError(f"{path}: PNG/JPEG hold 3-band RGB images; this cube has {cube.bands} bands")
    return write_rgb(cube.data, path, force, bits=16 if dtype == "uint16" else 8)


class _FileSource:
    def __init__(self, f, meta: Cube, shape):
        self._f = f
        self.meta = meta
        self.shape = tuple(shape)

    def read_window(self, r0, r1, c0, c1) -> np.ndarray:
        return self._f.window(r0, r1, c0, c1)

    def close(self) -> None:
        if hasattr(self._f, "close"):
            self._f.close()


def open_cube(path, *, var: str | None = None, layout: str | None = None) -> CubeSource:
    """A window reader: memory-mapped for ENVI, rasterio windows for GeoTIFF, dataset slices
    for HDF5 (pixels its ``valid`` dataset marks invalid read as NaN) and MATLAB v7.3,
    in-memory else (.mat v5, TIFF page stacks, RGB; pixels ``read_cube`` marks invalid read
    as NaN, so streamed processing and ``info`` see the invalid pixels of the file).

    NaN/Inf in windows are returned as they are in the file; predictors fill them.
    """
    fmt = detect_format(path)
    if fmt == "envi":
        from hsirestore.io.envi import EnviFile

        f = EnviFile(path)
        return _FileSource(f, f.metadata_cube(), f.shape)
    if fmt in ("tiff", "geotiff"):
        from hsirestore.io.geotiff import GeoTiffFile, _is_page_stack

        if not _is_page_stack(Path(path)):
            f = GeoTiffFile(path)
            return _FileSource(f, f.meta, f.shape)
    if fmt == "hdf5":
        from hsirestore.io.hdf5 import Hdf5File

        f = Hdf5File(path, var, layout)
        return _FileSource(f, f.meta, f.shape)
    if fmt == "mat":
        from hsirestore.io.matfile import MatV73File, is_v73

        if is_v73(Path(path)):
            f = MatV73File(path, var, layout)
            return _FileSource(f, f.meta, f.shape)
    return ArraySource(read_cube(path, var=var, layout=layout))


class _BufferedSink(ArraySink):
    """Buffers in memory, writes with write_cube on commit (formats without window writes)."""

    def __init__(self, path, meta: Cube, shape, force, dtype, var=None):
        from hsirestore.io.atomic import check_writable

        check_writable(output_paths(path), force)
        super().__init__(shape)
        self.path, self.meta, self.force, self.dtype, self.var = path, meta, force, dtype, var

    def commit(self) -> None:
        write_cube(self.meta.with_data(self.data), self.path, force=self.force, dtype=self.dtype,
                   var=self.var)


def create_cube(path, meta: Cube, shape, *, force: bool = False, dtype: str | None = None,
                var: str | None = None) -> CubeSink:
    """A window writer for ``shape`` (bands, rows, cols); call commit() to publish it.
    ``var``: the variable of a .mat output, as for :func:`write_cube`."""
    from hsirestore.io.atomic import check_free_space

    fmt = detect_format(path)
    dtype = writable_dtype(fmt, dtype)
    if fmt != "rgb":
        check_free_space(output_paths(path)[-1], _needed_bytes(fmt, shape, dtype))
    if fmt == "envi":
        from hsirestore.io.envi import EnviSink

        return EnviSink(path, meta, shape, force, dtype)
    if fmt in ("tiff", "geotiff"):
        from hsirestore.io.geotiff import GeoTiffSink

        return GeoTiffSink(path, meta, shape, force, dtype)
    if fmt == "hdf5":
        from hsirestore.io.hdf5 import Hdf5Sink

        return Hdf5Sink(path, meta, shape, force, dtype)
    if fmt == "mat":
        from hsirestore.io.matfile import MatV73Sink, wants_v73

        nbytes = int(np.prod([int(v) for v in shape])) * np.dtype(dtype or "float32").itemsize
        if wants_v73(nbytes, meta.attrs):  # v7.3 is HDF5: written window by window
            return MatV73Sink(path, meta, shape, force, dtype, var=var)
        from hsirestore.io.matfile import output_variable

        output_variable(meta.attrs, var)  # a bad name fails now, not at commit
    return _BufferedSink(path, meta, shape, force, dtype, var)
