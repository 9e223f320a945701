"""GeoTIFF through rasterio (CRS, transform, nodata, band descriptions, wavelengths in tags,
windowed reads and writes); plain multi-page TIFF stacks through tifffile.

Wavelengths come from per-band ``wavelength``/``fwhm`` tags (ours and GDAL's ENVI
convention, with ``wavelength_units`` on the dataset or on every band), else from GDAL's
IMAGERY domain (``CENTRAL_WAVELENGTH_UM``/``FWHM_UM``); units not given are guessed from the
values. Band scales/offsets (GDAL ``scale``/``offset``) are applied on reading, values equal
to nodata excepted; the cube then reports float32 and keeps them in ``attrs`` so that integer
outputs are written back as counts with the same scales (float outputs carry none).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError, first_line
from hsirestore.io.atomic import atomic_paths, check_writable

# GDAL's block cache defaults to 5 % of RAM and grows with the file read window by window,
# so a streamed GeoTIFF would not stay bounded; 128 MB is plenty for tile rows (a user's own
# GDAL_CACHEMAX wins)
os.environ.setdefault("GDAL_CACHEMAX", "128")
from hsirestore.io.common import (cast_for_writing, clean, fill_invalid, guess_units, invalid_fill,
                                  provenance, to_bands_first)
from hsirestore.io.cube import Cube


def _is_page_stack(path: Path) -> bool:
    """True for a plain multi-page TIFF of equal pages (one band per page); FormatError when
    the file is not a readable TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            return len(tf.pages) > 1 and not tf.pages[0].is_geotiff and \
                all(p.shape == tf.pages[0].shape for p in tf.pages)
    except Exception as e:
        first = first_line(e)
        raise FormatError(f"{path}: not a readable TIFF ({first})") from e


_MICROMETRES = ("um", "µm", "micrometer", "micrometers", "micron", "microns")
_NANOMETRES = ("nm", "nanometer", "nanometers")


def _floats(values) -> list[float] | None:
    """Every value as a float, or None when one is missing or not a number."""
    try:
        return [float(v) for v in values] if all(v is not None for v in values) else None
    except ValueError:
        return None


def _wavelengths(ds) -> tuple[list | None, list | None, str | None]:
    """(wavelengths, fwhm, units) from the band tags, else from the IMAGERY domain."""
    band_tags = [ds.tags(i) for i in range(1, ds.count + 1)]
    wl = _floats([t.get("wavelength") for t in band_tags])
    if wl is not None:
        units = {t.get("wavelength_units") for t in band_tags}
        units = ds.tags().get("wavelength_units") or (units.pop() if len(units) == 1 else None)
        return wl, _floats([t.get("fwhm") for t in band_tags]), guess_units(wl, units)
    imagery = [ds.tags(i, ns="IMAGERY") for i in range(1, ds.count + 1)]
    wl = _floats([t.get("CENTRAL_WAVELENGTH_UM") for t in imagery])
    if wl is not None:
        return wl, _floats([t.get("FWHM_UM") for t in imagery]), "um"
    return None, None, None


def _scaling(ds) -> tuple[np.ndarray, np.ndarray] | None:
    """float32 (bands, 1, 1) band scales and offsets, or None when they are all 1 and 0."""
    scales = np.array([1.0 if v is None else v for v in ds.scales], np.float64)
    offsets = np.array([0.0 if v is None else v for v in ds.offsets], np.float64)
    if (scales == 1).all() and (offsets == 0).all():
        return None
    return scales.astype(np.float32)[:, None, None], offsets.astype(np.float32)[:, None, None]


def _meta_from_dataset(ds) -> Cube:
    bands = ds.count
    wavelengths, fw, units = _wavelengths(ds)
    names = list(ds.descriptions) if all(ds.descriptions) else None
    crs = ds.crs.to_wkt() if ds.crs else None
    transform = tuple(ds.transform)[:6] if ds.crs or not ds.transform.is_identity else None
    source_dtype, attrs = ds.dtypes[0], {}
    if _scaling(ds) is not None:
        # scaled values are no longer the stored counts: report them as float32
        attrs = {"stored_dtype": source_dtype, "band_scales": [float(v) for v in ds.scales],
                 "band_offsets": [float(v) for v in ds.offsets]}
        source_dtype = "float32"
    carried = {k: v for k, v in ds.tags().items()
               if k != "wavelength_units" and not k.startswith("hsirestore_")}
    if carried:  # dataset metadata (ACQUISITION_DATE, AREA_OR_POINT, ...), written back as read
        attrs["geotiff_tags"] = carried
    return Cube(np.zeros((bands, 1, 1), np.float32), wavelengths=wavelengths, wavelength_units=units,
                fwhm=fw, nodata=ds.nodata, crs=crs, transform=transform, band_names=names,
                source_dtype=source_dtype, attrs=attrs)


def _stored_scaling(meta: Cube, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """The float64 (bands, 1, 1) band (scales, offsets) to write integer ``dtype`` outputs of a
    cube read with them (values go back to counts); None for float outputs, whose values are
    written as they are."""
    scales, offsets = meta.attrs.get("band_scales"), meta.attrs.get("band_offsets")
    if np.dtype(dtype).kind not in "ui" or scales is None or len(scales) != meta.bands:
        return None
    offsets = offsets if offsets is not None and len(offsets) == meta.bands else [0.0] * meta.bands
    scales = np.asarray(scales, np.float64)
    if not (np.isfinite(scales).all() and (scales != 0).all()):
        return None
    return scales[:, None, None], np.asarray(offsets, np.float64)[:, None, None]


def _to_counts(data: np.ndarray, bad: np.ndarray, scaling, nodata: float | None,
               dtype) -> np.ndarray:
    """(data - offset) / scale, except in invalid pixels and values equal to nodata (both
    stay nodata). A converted value that would round to the nodata count of integer
    ``dtype`` is moved one count away, so that a valid value is not read back as nodata."""
    scales, offsets = scaling
    keep = np.broadcast_to(bad, data.shape)
    has_nodata = nodata is not None and np.isfinite(nodata)
    if has_nodata:
        keep = keep | (data == np.float32(nodata))
    counts = (data - offsets.astype(np.float32)) / scales.astype(np.float32)
    if has_nodata and np.dtype(dtype).kind in "ui":
        info = np.iinfo(np.dtype(dtype))
        with np.errstate(invalid="ignore"):
            clash = ~keep & (np.clip(np.rint(counts), info.min, info.max) == nodata)
        counts[clash] = np.float32(nodata + 1 if nodata < info.max else nodata - 1)
    return np.where(keep, data, counts).astype(np.float32)


class GeoTiffFile:
    """Windowed reader over a (Geo)TIFF opened with rasterio."""

    def __init__(self, path):
        import rasterio

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.ds = rasterio.open(path)
        except Exception as e:  # rasterio raises RasterioIOError
            raise FormatError(f"{path}: not a readable TIFF ({e})") from e
        self.shape = (self.ds.count, self.ds.height, self.ds.width)
        self.meta = _meta_from_dataset(self.ds)
        self._scaling = _scaling(self.ds)

    def window(self, r0, r1, c0, c1) -> np.ndarray:
        """float32 (bands, r1 - r0, c1 - c0) with band scales/offsets applied (values equal
        to nodata are kept); pixels masked out by a GDAL dataset mask read as NaN (invalid)."""
        from rasterio.enums import MaskFlags
        from rasterio.windows import Window

        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = self.ds.read(window=win).astype(np.float32)
        if self._scaling is not None:
            nodata = self.ds.nodata
            keep = data == np.float32(nodata) if nodata is not None and np.isfinite(nodata) else False
            scaled = data * self._scaling[0] + self._scaling[1]
            data = np.where(keep, data, scaled).astype(np.float32)
        if MaskFlags.per_dataset in self.ds.mask_flag_enums[0] and self.ds.nodata is None:
            data[:, self.ds.dataset_mask(window=win) == 0] = np.nan
        return data

    def close(self):
        self.ds.close()


def read_tiff(path, layout: str | None = None) -> Cube:
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: file not found")
    stack = _is_page_stack(path)
    if stack:
        import tifffile

        arr = tifffile.imread(path)
        data = to_bands_first(arr, layout or "bands-first", str(path))
        src = arr.dtype.name
        data, valid = clean(data, None)
        return Cube(data, valid=valid, source_dtype=src, attrs={"tiff": "page-stack"})
    f = GeoTiffFile(path)
    try:
        meta = f.meta
        data, valid = clean(f.window(0, f.shape[1], 0, f.shape[2]), meta.nodata)
    finally:
        f.close()
    return meta.with_data(data, valid=valid)


def _profile(cube: Cube, shape, dtype: np.dtype) -> dict:
    from rasterio.transform import Affine

    bands, rows, cols = shape
    prof = dict(driver="GTiff", height=rows, width=cols, count=bands, dtype=dtype.name,
                tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                BIGTIFF="IF_SAFER")
    if bands > 1:
        prof["interleave"] = "band"
    if cube.crs:
        prof["crs"] = cube.crs
    if cube.transform is not None:
        prof["transform"] = Affine(*cube.transform)
    if cube.nodata is not None:
        prof["nodata"] = cube.nodata
    return prof


def _tag(ds, cube: Cube, scaling=None) -> None:
    """Band names, wavelengths (also per band with their units, GDAL's ENVI convention, and in
    micrometres in the IMAGERY domain of GDAL >= 3.10), notes, and band scales/offsets."""
    if cube.band_names:
        for i, n in enumerate(cube.band_names, 1):
            ds.set_band_description(i, n)
    units = (cube.wavelength_units or "").strip().lower()
    to_um = 1.0 if units in _MICROMETRES else (1e-3 if units in _NANOMETRES else None)
    for i in range(cube.bands):
        tags, imagery = {}, {}
        if cube.wavelengths is not None:
            tags["wavelength"] = repr(float(cube.wavelengths[i]))
            if cube.wavelength_units:
                tags["wavelength_units"] = cube.wavelength_units
            if to_um is not None:
                imagery["CENTRAL_WAVELENGTH_UM"] = f"{float(cube.wavelengths[i]) * to_um:.6g}"
        if cube.fwhm is not None:
            tags["fwhm"] = repr(float(cube.fwhm[i]))
            if to_um is not None and cube.wavelengths is not None:
                imagery["FWHM_UM"] = f"{float(cube.fwhm[i]) * to_um:.6g}"
        if tags:
            ds.update_tags(i + 1, **tags)
        if imagery:
            ds.update_tags(i + 1, ns="IMAGERY", **imagery)
    if scaling is not None:
        ds.scales = [float(v) for v in scaling[0].ravel()]
        ds.offsets = [float(v) for v in scaling[1].ravel()]
    carried = cube.attrs.get("geotiff_tags")
    if isinstance(carried, dict) and carried:
        ds.update_tags(**{str(k): str(v) for k, v in carried.items()})
    if cube.wavelength_units:
        ds.update_tags(wavelength_units=cube.wavelength_units)
    notes = provenance(cube.attrs)
    if notes:
        ds.update_tags(**{f"hsirestore_{k}": v for k, v in notes.items()})


def write_geotiff(cube: Cube, path, force: bool = False, dtype: str | None = None) -> list[Path]:
    import rasterio

    path = Path(path)
    scaling = _stored_scaling(cube, np.dtype(dtype or "float32"))
    # (valid values are kept off nodata in counts: here for unscaled outputs, by _to_counts
    # for scaled ones)
    data, bad = fill_invalid(cube.data, invalid_fill(cube.nodata, dtype or "float32"), cube.valid,
                             dtype=dtype if scaling is None else None, nodata=cube.nodata)
    if scaling is not None:
        data = _to_counts(data, bad, scaling, cube.nodata, dtype)
    arr = cast_for_writing(data, dtype)
    with atomic_paths([path], force=force) as (tmp,):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(tmp, "w", **_profile(cube, cube.shape, arr.dtype)) as ds:
                ds.write(arr)
                if cube.nodata is None and bad.any():
                    ds.write_mask(np.where(bad, 0, 255).astype(np.uint8))
                _tag(ds, cube, scaling)
    return [path]


class GeoTiffSink:
    """Incremental windowed GeoTIFF writer (temporary file, renamed on commit). Pixels with a
    non-finite value in any band are written as the nodata value, or, without one, as NaN
    (float) / 0 (integer) and flagged in the GDAL dataset mask. Integer outputs of a cube read
    with band scales/offsets are written back as counts with them, as by write_geotiff."""

    def __init__(self, path, meta: Cube, shape, force: bool = False, dtype: str | None = None):
        import rasterio

        self.path = Path(path)
        check_writable([self.path], force)
        self.force = force
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype or "float32")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.tif")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ds = rasterio.open(self.tmp, "w", **_profile(meta, self.shape, self.dtype))
        self.meta = meta
        self._fill = invalid_fill(meta.nodata, self.dtype)
        self._nodata = meta.nodata
        self._scaling = _stored_scaling(meta, self.dtype)
        self._masked = False  # whether the dataset mask has been created

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        from rasterio.windows import Window

        block, bad = fill_invalid(block, self._fill, nodata=self._nodata,
                                  dtype=self.dtype if self._scaling is None else None)
        if self._scaling is not None:
            block = _to_counts(block, bad, self._scaling, self.meta.nodata, self.dtype)
        b, h, w = block.shape
        win = Window(c0, r0, w, h)
        self.ds.write(cast_for_writing(block, self.dtype.name), window=win)
        if self.meta.nodata is None and (bad.any() or self._masked):
            if not self._masked:  # mark the whole image valid first, in strips
                rows, cols = self.shape[1:]
                for s0 in range(0, rows, 1024):
                    n = min(1024, rows - s0)
                    self.ds.write_mask(np.full((n, cols), 255, np.uint8), window=Window(0, s0, cols, n))
                self._masked = True
            self.ds.write_mask(np.where(bad, 0, 255).astype(np.uint8), window=win)

    def commit(self) -> None:
        from hsirestore.errors import OutputExistsError

        _tag(self.ds, self.meta.with_data(np.zeros((self.shape[0], 1, 1), np.float32), valid=None),
             self._scaling)
        self.ds.close()
        if not self.force and self.path.exists():
            self.abort()
            raise OutputExistsError(f"{self.path} appeared while writing; pass --force to overwrite it")
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if not self.ds.closed:
            self.ds.close()
        for p in (self.tmp, Path(str(self.tmp) + ".aux.xml")):
            if p.exists():
                p.unlink()
