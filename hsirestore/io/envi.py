"""ENVI (.hdr + raw data) through spectral (SPy) for reading; headers written directly.

Reads every interleave (bsq/bil/bip), both byte orders, ENVI data types 1-5, 12-15,
header offsets, wavelength/fwhm/units, band names, `data ignore value` and map info /
coordinate system string. Data are memory-mapped, so windows can be read without loading
the file.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError
from hsirestore.io.atomic import atomic_paths
from hsirestore.io.common import cast_for_writing, clean, fill_invalid, invalid_fill, provenance
from hsirestore.io.cube import Cube

ENVI_DTYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}
DTYPE_CODES = {np.dtype(v).name: k for k, v in ENVI_DTYPES.items()}
DATA_SUFFIXES = (".img", ".dat", ".raw", ".bsq", ".bil", ".bip", "")


def header_path(path: Path) -> Path:
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        return path
    for cand in (path.with_suffix(".hdr"), Path(str(path) + ".hdr")):
        if cand.exists():
            return cand
    return path.with_suffix(".hdr")


def data_path(hdr: Path) -> Path:
    for suf in DATA_SUFFIXES:
        cand = hdr.with_suffix(suf) if suf else hdr.with_suffix("")
        if cand.exists() and cand != hdr:
            return cand
    raise FormatError(f"{hdr}: ENVI header without its data file "
                      f"(looked for {hdr.stem} with {', '.join(s or 'no suffix' for s in DATA_SUFFIXES)})")


def _parse_header(hdr: Path) -> dict:
    """Header keys (lower case) -> str or list of str, parsed by spectral."""
    from spectral.io.envi import read_envi_header

    with open(hdr, "rb") as fh:
        if not fh.read(4) == b"ENVI":
            raise FormatError(f"{hdr}: not an ENVI header (first line must be 'ENVI')")
    try:
        meta = read_envi_header(str(hdr))
    except Exception as e:  # spectral raises its own error types
        raise FormatError(f"{hdr}: unreadable ENVI header ({e})") from e
    return {k.lower(): v for k, v in meta.items()}


def _list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip() != ""]
    value = value.strip()
    if value.startswith("{"):
        value = value[1:-1]
    items = [v.strip() for v in value.split(",")]
    return [v for v in items if v != ""]


_CHUNK = 16  # bands (or rows) mapped at a time by windowed reads/writes


def release_mapped_pages(mm: np.memmap) -> None:
    """Unmap the pages of ``mm`` this process has touched so they stop counting in its RSS
    (streamed cubes would otherwise grow RSS to the file size). The data stay in the page
    cache; dirty pages of a shared writable map are kept for writeback (Linux semantics of
    MADV_DONTNEED on MAP_SHARED file mappings). No-op where madvise is unavailable."""
    m = getattr(mm, "_mmap", None)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            m.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


class EnviFile:
    """An opened ENVI file: header facts plus a memory map of the data (no full read)."""

    def __init__(self, path: os.PathLike | str):
        hdr = header_path(Path(path))
        if not hdr.exists():
            raise FormatError(f"{path}: ENVI header {hdr.name} not found")
        meta = _parse_header(hdr)
        try:
            samples, lines, bands = (int(meta[k]) for k in ("samples", "lines", "bands"))
        except (KeyError, ValueError) as e:
            raise FormatError(f"{hdr}: header lacks a valid samples/lines/bands entry") from e
        try:
            code = int(meta.get("data type", "4"))
        except ValueError:
            raise FormatError(f"{hdr}: unreadable data type {meta.get('data type')!r}") from None
        if code not in ENVI_DTYPES:
            kind = "complex data are not supported" if code in (6, 9) else "unknown data type"
            raise FormatError(f"{hdr}: ENVI data type {code}: {kind}")
        order = ">" if str(meta.get("byte order", "0")).strip() == "1" else "<"
        dtype = np.dtype(ENVI_DTYPES[code]).newbyteorder(order)
        interleave = str(meta.get("interleave", "bsq")).strip().lower()
        if interleave not in ("bsq", "bil", "bip"):
            raise FormatError(f"{hdr}: unknown interleave {interleave!r}")
        offset = int(str(meta.get("header offset", "0")) or 0)
        data_file = data_path(hdr)
        need = offset + samples * lines * bands * dtype.itemsize
        size = data_file.stat().st_size
        if size < need:
            raise FormatError(f"{data_file}: data file is truncated or does not match the header "
                              f"({size} bytes, header needs {need})")
        if size > need:
            raise FormatError(f"{data_file}: data file size does not match the header ({size} bytes, "
                              f"header describes {need}: check samples/lines/bands, data type and "
                              "header offset)")
        shape = {"bsq": (bands, lines, samples), "bil": (lines, bands, samples),
                 "bip": (lines, samples, bands)}[interleave]
        self.raw = np.memmap(data_file, dtype=dtype, mode="r", offset=offset, shape=shape)
        self.interleave = interleave
        self.shape = (bands, lines, samples)
        self.header = hdr
        self.data_file = data_file
        self.meta = meta
        self.source_dtype = np.dtype(ENVI_DTYPES[code]).name
        nodata = str(meta.get("data ignore value", "")).strip()
        self.nodata = float(nodata) if nodata not in (None, "") else None

    def window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """float32 (bands, r1-r0, c1-c0), native byte order."""
        out = np.empty((self.shape[0], r1 - r0, c1 - c0), np.float32)
        # copy a few bands (BSQ) or rows (BIL/BIP) at a time and unmap them at once, so a
        # window never maps more than a small slice of the file
        if self.interleave == "bsq":
            for b0 in range(0, self.shape[0], _CHUNK):
                out[b0:b0 + _CHUNK] = self.raw[b0:b0 + _CHUNK, r0:r1, c0:c1]
                release_mapped_pages(self.raw)
        else:
            for s0 in range(r0, r1, _CHUNK):
                s1 = min(r1, s0 + _CHUNK)
                if self.interleave == "bil":
                    out[:, s0 - r0:s1 - r0] = self.raw[s0:s1, :, c0:c1].transpose(1, 0, 2)
                else:
                    out[:, s0 - r0:s1 - r0] = self.raw[s0:s1, c0:c1, :].transpose(2, 0, 1)
                release_mapped_pages(self.raw)
        return out

    def metadata_cube(self) -> Cube:
        """A Cube with metadata and a (bands, 1, 1) placeholder for data."""
        m = self.meta
        bands = self.shape[0]

        def floats(key):
            vals = _list(m.get(key))
            if not vals:
                return None
            try:
                out = [float(v) for v in vals]
            except ValueError:
                return None
            return out if len(out) == bands else None

        names = _list(m.get("band names"))
        crs, transform = _georef(m)
        attrs = {}
        if "description" in m:
            attrs["description"] = str(m["description"]).strip("{} ")
        return Cube(np.zeros((bands, 1, 1), np.float32), wavelengths=floats("wavelength"),
                    wavelength_units=(str(m.get("wavelength units", "")).strip() or None), fwhm=floats("fwhm"),
                    nodata=self.nodata, crs=crs, transform=transform,
                    band_names=names if names and len(names) == bands else None,
                    source_dtype=self.source_dtype, attrs=attrs)


def _georef(meta: dict[str, str]):
    crs = meta.get("coordinate system string")
    if isinstance(crs, list):
        crs = ",".join(crs)
    crs = crs.strip().strip("{}").strip() if crs else None
    info = _list(meta.get("map info"))
    transform = None
    if info and len(info) >= 7:
        try:
            rx, ry, e, n, dx, dy = (float(v) for v in info[1:7])
            rot = 0.0
            for item in info[7:]:
                if item.lower().startswith("rotation="):
                    rot = float(item.split("=")[1])
            if rot == 0.0:
                transform = (dx, 0.0, e - (rx - 1) * dx, 0.0, -dy, n + (ry - 1) * dy)
        except ValueError:
            transform = None
    return crs or None, transform


def read_envi(path) -> Cube:
    f = EnviFile(path)
    meta = f.metadata_cube()
    data, valid = clean(f.window(0, f.shape[1], 0, f.shape[2]), f.nodata)
    return meta.with_data(data, valid=valid)


def _fmt_list(values, fmt="{:g}") -> str:
    return "{ " + " , ".join(fmt.format(v) for v in values) + " }"


def header_text(meta: Cube, shape: tuple[int, int, int], dtype: np.dtype) -> str:
    bands, rows, cols = shape
    notes = "".join(f"; {k} = {v}" for k, v in provenance(meta.attrs).items())
    lines = ["ENVI", "description = {written by hsirestore" + notes + "}", f"samples = {cols}",
             f"lines = {rows}", f"bands = {bands}", "header offset = 0",
             "file type = ENVI Standard", f"data type = {DTYPE_CODES[np.dtype(dtype).name]}",
             "interleave = bsq", "byte order = 0"]
    if meta.wavelengths is not None:
        lines.append("wavelength = " + _fmt_list(meta.wavelengths, "{:.10g}"))
    if meta.fwhm is not None:
        lines.append("fwhm = " + _fmt_list(meta.fwhm, "{:.10g}"))
    if meta.wavelength_units:
        lines.append(f"wavelength units = {meta.wavelength_units}")
    if meta.band_names:
        lines.append("band names = { " + " , ".join(n.replace(",", ";") for n in meta.band_names) + " }")
    if meta.nodata is not None:
        lines.append(f"data ignore value = {meta.nodata:.10g}")
    if meta.transform is not None:
        a, b, c, d, e, f = meta.transform
        if b == 0 and d == 0:
            lines.append(f"map info = {{ Arbitrary , 1 , 1 , {c:.12g} , {f:.12g} , {a:.12g} , {-e:.12g} , units=Meters }}")
    if meta.crs:
        lines.append("coordinate system string = {" + meta.crs.replace("\n", " ") + "}")
    return "\n".join(lines) + "\n"


def envi_paths(path: Path) -> tuple[Path, Path]:
    """(header, data) paths for an output named .hdr, .img or anything else."""
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        return path, path.with_suffix(".img")
    return path.with_suffix(".hdr"), path


def write_envi(cube: Cube, path, force: bool = False, dtype: str | None = None) -> list[Path]:
    hdr, dat = envi_paths(path)
    data, _ = fill_invalid(cube.data, invalid_fill(cube.nodata, dtype or "float32"), cube.valid)
    arr = cast_for_writing(data, dtype)
    with atomic_paths([hdr, dat], force=force) as (thdr, tdat):
        arr.astype(arr.dtype.newbyteorder("<"), copy=False).tofile(tdat)
        thdr.write_text(header_text(cube, cube.shape, arr.dtype))
    return [hdr, dat]


class EnviSink:
    """Incremental BSQ writer (memory map on a temporary file, renamed on commit). Pixels with
    a non-finite value in any band are written as the nodata value (NaN in float files
    without one, 0 in integer files without one)."""

    def __init__(self, path, meta: Cube, shape, force: bool = False, dtype: str | None = None):
        from hsirestore.io.atomic import check_writable

        self.hdr, self.dat = envi_paths(Path(path))
        check_writable([self.hdr, self.dat], force)
        self.force = force
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype or "float32")
        self.meta = meta
        self.tmp_dat = self.dat.with_name(f".{self.dat.name}.{os.getpid()}.tmp")
        self.tmp_hdr = self.hdr.with_name(f".{self.hdr.name}.{os.getpid()}.tmp")
        self.mm = np.memmap(self.tmp_dat, dtype=self.dtype.newbyteorder("<"), mode="w+", shape=self.shape)
        self._fill = invalid_fill(meta.nodata, self.dtype)

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        block, _ = fill_invalid(block, self._fill)
        b, h, w = block.shape
        for b0 in range(0, b, _CHUNK):
            self.mm[b0 : b0 + _CHUNK, r0 : r0 + h, c0 : c0 + w] = cast_for_writing(
                block[b0 : b0 + _CHUNK], self.dtype.name)
            release_mapped_pages(self.mm)

    def commit(self) -> None:
        from hsirestore.errors import OutputExistsError

        self.mm.flush()
        del self.mm
        self.tmp_hdr.write_text(header_text(self.meta, self.shape, self.dtype))
        if not self.force and (self.hdr.exists() or self.dat.exists()):
            self.abort()
            raise OutputExistsError(f"{self.hdr} appeared while writing; pass --force to overwrite it")
        os.replace(self.tmp_dat, self.dat)
        os.replace(self.tmp_hdr, self.hdr)

    def abort(self) -> None:
        if hasattr(self, "mm"):
            del self.mm
        for p in (self.tmp_dat, self.tmp_hdr):
            if p.exists():
                p.unlink()
