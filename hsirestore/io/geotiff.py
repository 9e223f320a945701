"""GeoTIFF through rasterio (CRS, transform, nodata, band descriptions, wavelengths in tags,
windowed reads and writes); plain multi-page TIFF stacks through tifffile."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from hsirestore.errors import FormatError
from hsirestore.io.atomic import atomic_paths, check_writable
from hsirestore.io.common import (cast_for_writing, clean, fill_invalid, invalid_fill, provenance,
                                  to_bands_first)
from hsirestore.io.cube import Cube


def _is_page_stack(path: Path) -> bool:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return len(tf.pages) > 1 and not tf.pages[0].is_geotiff and \
            all(p.shape == tf.pages[0].shape for p in tf.pages)


def _meta_from_dataset(ds) -> Cube:
    bands = ds.count
    tags = ds.tags()
    wl, fwhm = [], []
    for i in range(1, bands + 1):
        t = ds.tags(i)
        wl.append(t.get("wavelength"))
        fwhm.append(t.get("fwhm"))
    wavelengths = [float(v) for v in wl] if all(v is not None for v in wl) else None
    fw = [float(v) for v in fwhm] if all(v is not None for v in fwhm) else None
    names = list(ds.descriptions) if all(ds.descriptions) else None
    crs = ds.crs.to_wkt() if ds.crs else None
    transform = tuple(ds.transform)[:6] if ds.crs or not ds.transform.is_identity else None
    return Cube(np.zeros((bands, 1, 1), np.float32), wavelengths=wavelengths,
                wavelength_units=tags.get("wavelength_units") or (None if wavelengths is None else "nm"),
                fwhm=fw, nodata=ds.nodata, crs=crs, transform=transform, band_names=names,
                source_dtype=ds.dtypes[0])


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

    def window(self, r0, r1, c0, c1) -> np.ndarray:
        """float32 (bands, r1 - r0, c1 - c0); pixels masked out by a GDAL dataset mask read as
        NaN (invalid)."""
        from rasterio.enums import MaskFlags
        from rasterio.windows import Window

        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = self.ds.read(window=win).astype(np.float32)
        if MaskFlags.per_dataset in self.ds.mask_flag_enums[0] and self.ds.nodata is None:
            data[:, self.ds.dataset_mask(window=win) == 0] = np.nan
        return data

    def close(self):
        self.ds.close()


def read_tiff(path, layout: str | None = None) -> Cube:
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: file not found")
    try:
        stack = _is_page_stack(path)
    except Exception as e:
        raise FormatError(f"{path}: not a readable TIFF ({e})") from e
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


def _tag(ds, cube: Cube) -> None:
    if cube.band_names:
        for i, n in enumerate(cube.band_names, 1):
            ds.set_band_description(i, n)
    for i in range(cube.bands):
        tags = {}
        if cube.wavelengths is not None:
            tags["wavelength"] = repr(float(cube.wavelengths[i]))
        if cube.fwhm is not None:
            tags["fwhm"] = repr(float(cube.fwhm[i]))
        if tags:
            ds.update_tags(i + 1, **tags)
    if cube.wavelength_units:
        ds.update_tags(wavelength_units=cube.wavelength_units)
    notes = provenance(cube.attrs)
    if notes:
        ds.update_tags(**{f"hsirestore_{k}": v for k, v in notes.items()})


def write_geotiff(cube: Cube, path, force: bool = False, dtype: str | None = None) -> list[Path]:
    import rasterio

    path = Path(path)
    data, bad = fill_invalid(cube.data, invalid_fill(cube.nodata, dtype or "float32"), cube.valid)
    arr = cast_for_writing(data, dtype)
    with atomic_paths([path], force=force) as (tmp,):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(tmp, "w", **_profile(cube, cube.shape, arr.dtype)) as ds:
                ds.write(arr)
                if cube.nodata is None and bad.any():
                    ds.write_mask(np.where(bad, 0, 255).astype(np.uint8))
                _tag(ds, cube)
    return [path]


class GeoTiffSink:
    """Incremental windowed GeoTIFF writer (temporary file, renamed on commit). Pixels with a
    non-finite value in any band are written as the nodata value, or, without one, as NaN
    (float) / 0 (integer) and flagged in the GDAL dataset mask."""

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
        self._masked = False  # whether the dataset mask has been created

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        from rasterio.windows import Window

        block, bad = fill_invalid(block, self._fill)
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

        _tag(self.ds, self.meta.with_data(np.zeros((self.shape[0], 1, 1), np.float32)))
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
