"""The in-memory hyperspectral cube and the streaming source/sink protocols.

This module never imports torch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from hsirestore.errors import ShapeError


@dataclass
class Cube:
    """A hyperspectral (or RGB) image with its metadata.

    Attributes:
        data: float32 array, shape (bands, rows, cols).
        wavelengths: band centres, shape (bands,), or None.
        wavelength_units: e.g. "nm", "um"; None when unknown.
        fwhm: band widths, shape (bands,), same units, or None.
        nodata: the value marking missing pixels in the file (kept for writing), or None.
        valid: bool mask, shape (rows, cols), True where every band holds a finite,
            non-nodata value; None means "all valid".
        crs: coordinate reference system as WKT (or an EPSG string), or None.
        transform: affine geotransform (a, b, c, d, e, f) in rasterio order
            (x = a*col + b*row + c, y = d*col + e*row + f), or None.
        band_names: one name per band, or None.
        source_dtype: numpy dtype name of the values in the file the cube came from
            ("uint16", "float32", ...); writers use it only when asked to.
        attrs: free metadata (str -> JSON-able); format specific keys go here.
    """

    data: np.ndarray
    wavelengths: np.ndarray | None = None
    wavelength_units: str | None = None
    fwhm: np.ndarray | None = None
    nodata: float | None = None
    valid: np.ndarray | None = None
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    band_names: list[str] | None = None
    source_dtype: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise ShapeError(f"Cube data must be 3-D (bands, rows, cols); got shape {data.shape}")
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        self.data = data
        if self.wavelengths is not None:
            self.wavelengths = np.asarray(self.wavelengths, dtype=np.float64).reshape(-1)
            if self.wavelengths.size != data.shape[0]:
                raise ShapeError(
                    f"{self.wavelengths.size} wavelengths for {data.shape[0]} bands"
                )
        if self.fwhm is not None:
            self.fwhm = np.asarray(self.fwhm, dtype=np.float64).reshape(-1)
            if self.fwhm.size != data.shape[0]:
                raise ShapeError(f"{self.fwhm.size} fwhm values for {data.shape[0]} bands")
        if self.valid is not None:
            self.valid = np.asarray(self.valid, dtype=bool)
            if self.valid.shape != data.shape[1:]:
                raise ShapeError(f"valid mask shape {self.valid.shape} != {data.shape[1:]}")
        if self.transform is not None:
            self.transform = tuple(float(v) for v in self.transform)[:6]
        if self.band_names is not None:
            self.band_names = [str(n) for n in self.band_names]
            if len(self.band_names) != data.shape[0]:
                raise ShapeError(f"{len(self.band_names)} band names for {data.shape[0]} bands")

    @property
    def bands(self) -> int:
        return int(self.data.shape[0])

    @property
    def rows(self) -> int:
        return int(self.data.shape[1])

    @property
    def cols(self) -> int:
        return int(self.data.shape[2])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    def with_data(self, data: np.ndarray, **changes: Any) -> "Cube":
        """A copy carrying new data (same rows/cols unless metadata is changed too)."""
        meta = copy.deepcopy(replace(self, data=np.zeros((1, 1, 1), np.float32), wavelengths=None,
                                     fwhm=None, valid=None, band_names=None))
        fields = dict(
            wavelengths=self.wavelengths, fwhm=self.fwhm, valid=self.valid,
            band_names=self.band_names,
        )
        fields.update(changes)
        return replace(meta, data=data, **fields)


class CubeSource(Protocol):
    """A cube that can be read window by window without loading it whole.

    ``meta`` is a Cube holding the metadata with a placeholder ``data`` of shape
    (bands, 1, 1); ``shape`` is the real (bands, rows, cols).
    """

    shape: tuple[int, int, int]
    meta: Cube

    def read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """float32 array (bands, r1 - r0, c1 - c0)."""
        ...

    def close(self) -> None: ...


class CubeSink(Protocol):
    """A cube being written window by window; ``commit()`` makes it appear atomically."""

    shape: tuple[int, int, int]

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        """Write a float32 block (bands, h, w) with its top-left corner at (r0, c0)."""
        ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class ArraySource:
    """CubeSource over an in-memory Cube. Pixels that ``cube.valid`` marks invalid read as
    NaN, as they do from the file readers (``meta`` is a (bands, 1, 1) placeholder and cannot
    carry the mask; readers zero NaN in ``Cube.data``)."""

    def __init__(self, cube: Cube):
        self.cube = cube
        self.shape = cube.shape
        self.meta = cube.with_data(np.zeros((cube.bands, 1, 1), np.float32), valid=None)

    def read_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        block = self.cube.data[:, r0:r1, c0:c1]
        if self.cube.valid is not None:
            ok = self.cube.valid[r0:r1, c0:c1]
            if not ok.all():
                block = block.copy()
                block[:, ~ok] = np.nan
        return block

    def close(self) -> None:
        pass


class ArraySink:
    """CubeSink into a numpy array (``.data``, float32 (bands, rows, cols))."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = tuple(shape)
        self.data = np.zeros(self.shape, np.float32)

    def write_window(self, r0: int, c0: int, block: np.ndarray) -> None:
        b, h, w = block.shape
        self.data[:, r0 : r0 + h, c0 : c0 + w] = block

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass
