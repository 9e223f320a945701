"""ENVI (.hdr + raw data) through spectral (SPy) for reading; headers written directly.

Reads every interleave (bsq/bil/bip), both byte orders, ENVI data types 1-5, 12-15,
header offsets, wavelength/fwhm/units, band names, `data ignore value` and map info /
coordinate system string. Data are memory-mapped, so windows can be read without loading
the file. The header or the data file may be given (any suffix letter case, GDAL's x.bin +
x.hdr); bytes after the image in the data file are ignored. Map info: UTM and Geographic
Lat/Lon give the CRS when there is no coordinate system string; ``rotation=`` follows GDAL.
The CARRIED_KEYS (bbl, data gain/offset values, reflectance scale factor, sensor type, ...)
are kept, not applied, in ``Cube.attrs["envi_header"]`` and written back by header_text when
the output has the same band count.
"""
from __future__ import annotations

import math
import mmap
import os
import re
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError
from hsirestore.io.atomic import atomic_paths
from hsirestore.io.common import cast_for_writing, clean, fill_invalid, invalid_fill, provenance
from hsirestore.io.cube import Cube

ENVI_DTYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}
DTYPE_CODES = {np.dtype(v).name: k for k, v in ENVI_DTYPES.items()}
DATA_SUFFIXES = (".img", ".dat", ".raw", ".bin", ".bsq", ".bil", ".bip", "")

#: header keys kept in ``Cube.attrs["envi_header"]`` and written back when the output has the
#: source's band count; those holding one value per band are dropped when their length is wrong
PER_BAND_KEYS = ("bbl", "data gain values", "data offset values", "data reflectance gain values",
                 "data reflectance offset values", "solar irradiance")
CARRIED_KEYS = PER_BAND_KEYS + ("reflectance scale factor", "sensor type", "acquisition time",
                                "default bands", "sun azimuth", "sun elevation")


def _find(path: Path) -> Path | None:
    """``path`` when it is a file, else the file in its folder whose name differs only in case."""
    if path.is_file():
        return path
    try:
        names = sorted(os.listdir(path.parent))
    except OSError:
        return None
    low = path.name.lower()
    for name in names:
        if name.lower() == low and (path.parent / name).is_file():
            return path.parent / name
    return None


def header_path(path: Path) -> Path:
    """The header of an ENVI file given by its header or its data file (``x.img.hdr`` before
    ``x.hdr``; any letter case). A header that is not found is returned as ``x.hdr``."""
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        return path
    cands = [Path(str(path) + ".hdr"), path.with_suffix(".hdr")]
    for cand in cands:
        found = _find(cand)
        if found is not None:
            return found
    return cands[-1]


def data_path(hdr: Path, given: Path | None = None) -> Path:
    """The data file of header ``hdr``: ``given`` (the file the user named) when it exists,
    else the header's name with a usual data suffix or none, in any letter case."""
    hdr = Path(hdr)
    if given is not None and Path(given).is_file() and Path(given) != hdr:
        return Path(given)
    named = Path(hdr.stem).suffix.lower() in DATA_SUFFIXES[:-1]  # x.img.hdr names x.img
    order = ("",) + DATA_SUFFIXES[:-1] if named else DATA_SUFFIXES
    for suf in order:
        cand = _find(hdr.with_suffix(suf))
        if cand is not None and cand != hdr:
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
        path = Path(path)
        hdr = header_path(path)
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
        data_file = data_path(hdr, path if path != hdr else None)
        need = offset + samples * lines * bands * dtype.itemsize
        size = data_file.stat().st_size
        if size < need:  # bytes after the image (size > need) are ignored, as GDAL does
            raise FormatError(f"{data_file}: data file is truncated or does not match the header "
                              f"({size} bytes, header needs {need})")
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
        header = _carried(m, bands)
        if header:
            attrs["envi_header"] = header
        return Cube(np.zeros((bands, 1, 1), np.float32), wavelengths=floats("wavelength"),
                    wavelength_units=(str(m.get("wavelength units", "")).strip() or None), fwhm=floats("fwhm"),
                    nodata=self.nodata, crs=crs, transform=transform,
                    band_names=names if names and len(names) == bands else None,
                    source_dtype=self.source_dtype, attrs=attrs)


def _carried(meta: dict, bands: int) -> dict:
    """The CARRIED_KEYS of a header (per-band lists only with one value per band) and its map
    info, as str or list of str, plus the source's band count under "bands"; {} if none."""
    out = {}
    for key in CARRIED_KEYS:
        if key not in meta:
            continue
        value = meta[key]
        if key in PER_BAND_KEYS or isinstance(value, list):
            value = _list(value)
            if key in PER_BAND_KEYS and len(value) != bands:
                continue
        else:
            value = " ".join(str(value).split())
        out[key] = value
    info = _list(meta.get("map info"))
    if info:
        out["map info"] = info
    if out:
        out["bands"] = bands
    return out


#: ENVI datum name (lower case, letters and digits only) -> (ENVI name, geographic EPSG,
#: UTM north EPSG base, UTM south EPSG base or None, highest UTM zone with an EPSG code)
_DATUMS = {
    "wgs84": ("WGS-84", 4326, 32600, 32700, 60),
    "wgs72": ("WGS-72", 4322, 32200, 32300, 60),
    "northamerica1983": ("North America 1983", 4269, 26900, None, 23),
    "nad83": ("North America 1983", 4269, 26900, None, 23),
    "northamerica1927": ("North America 1927", 4267, 26700, None, 22),
    "nad27": ("North America 1927", 4267, 26700, None, 22),
}


def _datum(name: str):
    return _DATUMS.get(re.sub(r"[^a-z0-9]", "", name.lower()))


def _map_info_crs(info: list[str]) -> str | None:
    """"EPSG:n" for a UTM or Geographic Lat/Lon map info with a known datum, else None."""
    name = info[0].strip().lower()
    extra = [t for t in info[7:] if "=" not in t]
    try:
        if name.startswith("utm") and len(extra) >= 3:
            zone, north, datum = int(float(extra[0])), not extra[1].lower().startswith("s"), _datum(extra[2])
            if datum and 1 <= zone <= datum[4]:
                base = datum[2] if north else datum[3]
                return f"EPSG:{base + zone}" if base else None
        elif name.startswith("geographic lat") and extra and _datum(extra[0]):
            return f"EPSG:{_datum(extra[0])[1]}"
    except ValueError:
        pass
    return None


def _map_info_transform(info: list[str]):
    """Affine (a, b, c, d, e, f) of a map info: GDAL's convention for ``rotation=R`` (degrees,
    a = dx cos R, b = dx sin R, d = dy sin R, e = -dy cos R; 180 means "rows go north"), with the
    reference pixel (1-based, may be fractional) mapped through the rotated grid."""
    try:
        rx, ry, east, north, dx, dy = (float(v) for v in info[1:7])
        rot = 0.0
        for item in info[7:]:
            key, _, value = item.partition("=")
            if key.strip().lower() == "rotation":
                rot = float(value)
    except ValueError:
        return None
    if not (dx and dy and all(math.isfinite(v) for v in (rx, ry, east, north, dx, dy, rot))):
        return None
    if abs(rot) == 180.0:
        a, b, d, e = dx, 0.0, 0.0, dy
    else:
        t = math.radians(rot)
        cos, sin = (round(math.cos(t)), round(math.sin(t))) if rot % 90 == 0 else (math.cos(t), math.sin(t))
        a, b, d, e = dx * cos, dx * sin, dy * sin, -dy * cos
    return (a, b, east - a * (rx - 1) - b * (ry - 1), d, e, north - d * (rx - 1) - e * (ry - 1))


def _georef(meta: dict[str, str]):
    """(crs, transform): the CRS from the coordinate system string, else from a UTM or
    Geographic Lat/Lon map info with a known datum ("EPSG:n"); the transform from map info."""
    crs = meta.get("coordinate system string")
    if isinstance(crs, list):
        crs = ",".join(crs)
    crs = crs.strip().strip("{}").strip() if crs else None
    info = _list(meta.get("map info"))
    transform = None
    if info and len(info) >= 7:
        transform = _map_info_transform(info)
        crs = crs or _map_info_crs(info)
    return crs or None, transform


def read_envi(path) -> Cube:
    f = EnviFile(path)
    meta = f.metadata_cube()
    data, valid = clean(f.window(0, f.shape[1], 0, f.shape[2]), f.nodata)
    return meta.with_data(data, valid=valid)


def _fmt_list(values, fmt="{:g}") -> str:
    return "{ " + " , ".join(fmt.format(v) for v in values) + " }"


def _crs_facts(crs: str | None) -> tuple[int | None, str | None, str | None]:
    """(EPSG code, "geographic"/"projected", linear unit name) of a CRS string (WKT or
    "EPSG:n", parsed with rasterio); None where unknown."""
    if not crs:
        return None, None, None
    m = re.fullmatch(r"\s*epsg:(\d+)\s*", crs, re.IGNORECASE)
    code = int(m.group(1)) if m else None
    try:
        from rasterio.crs import CRS

        c = CRS.from_user_input(crs)
        kind = "geographic" if c.is_geographic else ("projected" if c.is_projected else None)
        if code is None:  # GDAL names WGS 84 in lon/lat order OGC:CRS84
            code = 4326 if c.to_authority() == ("OGC", "CRS84") else c.to_epsg()
        return code, kind, (c.linear_units if kind == "projected" else None)
    except Exception:  # rasterio missing, or a CRS it cannot parse
        return code, None, None


def _projection(meta: Cube) -> tuple[list[str], str | None]:
    """(map info projection fields: name then zone/hemisphere/datum as ENVI writes them, units)
    from the CRS, else from the source's map info, else ["Arbitrary"] without units."""
    code, kind, linear = _crs_facts(meta.crs)
    if code:
        for name, geog, north, south, zones in _DATUMS.values():
            if code == geog:
                return ["Geographic Lat/Lon", name], "Degrees"
            for base, hemi in ((north, "North"), (south, "South")):
                if base and base < code <= base + zones:
                    return ["UTM", str(code - base), hemi, name], "Meters"
    units = {"geographic": "Degrees", "projected": "Meters"}.get(kind)
    if units == "Meters" and linear and ("foot" in linear.lower() or "feet" in linear.lower()):
        units = "Feet"
    header = meta.attrs.get("envi_header") if isinstance(meta.attrs, dict) else None
    info = header.get("map info") if isinstance(header, dict) else None
    if info and len(info) >= 7:
        fields = [info[0]] + [t for t in info[7:] if "=" not in t]
        given = [t.partition("=")[2].strip() for t in info[7:] if t.strip().lower().startswith("units=")]
        return fields, units or (given[0] if given else None)
    if kind == "geographic":
        return ["Geographic Lat/Lon"], units
    return ["Arbitrary"], units


def _map_info(meta: Cube) -> str | None:
    """The map info line for ``meta.transform`` (GDAL's rotation convention, see
    _map_info_transform), or None when the transform has shear or mirroring ENVI cannot hold."""
    a, b, c, d, e, f = meta.transform
    if b == 0 and d == 0 and a > 0 and e > 0:  # rows go north: GDAL writes rotation=180
        dx, dy, rot = a, e, 180.0
    else:
        dx, dy = math.hypot(a, b), math.hypot(d, e)
        rot = math.degrees(math.atan2(b, a))
        other = math.degrees(math.atan2(d, -e))
        if not (dx and dy) or abs((rot - other + 180) % 360 - 180) > 1e-6 or abs(abs(rot) - 180) < 1e-9:
            return None
        rot = 0.0 if abs(rot) < 1e-9 else rot
    fields, units = _projection(meta)
    items = [fields[0], "1", "1", f"{c:.15g}", f"{f:.15g}", f"{dx:.15g}", f"{dy:.15g}", *fields[1:]]
    if units:
        items.append(f"units={units}")
    if rot:
        items.append(f"rotation={rot:.15g}")
    return "map info = { " + " , ".join(items) + " }"


def _css(crs: str) -> str | None:
    """The coordinate system string (ESRI WKT) for a CRS: WKT as it is, "EPSG:n" and other
    names converted with rasterio; None when they cannot be."""
    if "[" in crs:
        return crs.replace("\r", " ").replace("\n", " ")
    try:
        from rasterio.crs import CRS

        return CRS.from_user_input(crs.strip()).to_wkt(version="WKT1_ESRI")
    except Exception:
        return None


def _carried_lines(meta: Cube, bands: int) -> list[str]:
    """Header lines for the source's CARRIED_KEYS when the output has the source's band count."""
    header = meta.attrs.get("envi_header") if isinstance(meta.attrs, dict) else None
    if not isinstance(header, dict) or header.get("bands") != bands:
        return []
    lines = []
    for key in CARRIED_KEYS:
        value = header.get(key)
        if value is None or (key in PER_BAND_KEYS and (not isinstance(value, list) or len(value) != bands)):
            continue
        if isinstance(value, list):
            lines.append(f"{key} = {{ " + " , ".join(str(v) for v in value) + " }")
        else:
            lines.append(f"{key} = " + " ".join(str(value).split()))
    return lines


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
        info = _map_info(meta)
        if info:
            lines.append(info)
    css = _css(meta.crs) if meta.crs else None
    if css:
        lines.append("coordinate system string = {" + css + "}")
    lines += _carried_lines(meta, bands)
    return "\n".join(lines) + "\n"


def envi_paths(path: Path) -> tuple[Path, Path]:
    """(header, data) paths for an output named .hdr, .img or anything else: ``x.hdr`` writes
    ``x.img`` (``X.HDR``: ``X.IMG``; ``x.img.hdr``: ``x.img``), ``x.bin`` gets ``x.hdr``."""
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        if Path(path.stem).suffix.lower() in DATA_SUFFIXES[:-1]:
            return path, path.with_suffix("")
        return path, path.with_suffix(".IMG" if path.suffix == ".HDR" else ".img")
    return path.with_suffix(".HDR" if path.suffix.isupper() else ".hdr"), path


def write_envi(cube: Cube, path, force: bool = False, dtype: str | None = None) -> list[Path]:
    hdr, dat = envi_paths(path)
    data, _ = fill_invalid(cube.data, invalid_fill(cube.nodata, dtype or "float32"), cube.valid,
                           dtype=dtype, nodata=cube.nodata)
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
        from hsirestore.io.atomic import check_writable, preallocate

        self.hdr, self.dat = envi_paths(Path(path))
        check_writable([self.hdr, self.dat], force)
        self.force = force
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype or "float32")
        self.meta = meta
        self.tmp_dat = self.dat.with_name(f".{self.dat.name}.{os.getpid()}.tmp")
        self.tmp_hdr = self.hdr.with_name(f".{self.hdr.name}.{os.getpid()}.tmp")
        preallocate(self.tmp_dat, int(np.prod(self.shape)) * self.dtype.itemsize, self.dat)
        self.mm = np.memmap(self.tmp_dat, dtype=self.dtype.newbyteorder("<"), mode="r+", shape=self.shape)
        self._fill = invalid_fill(meta.nodata, self.dtype)
        self._nodata = meta.nodata

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        block, _ = fill_invalid(block, self._fill, dtype=self.dtype, nodata=self._nodata)
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
