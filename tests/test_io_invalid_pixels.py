"""Invalid pixels (NaN/Inf from the tiled engine, or Cube.valid False) are written the same
way by every writer: nodata when the cube has one, else NaN (float) or 0 (integer), and
GeoTIFFs without nodata carry a GDAL dataset mask so integer outputs keep the information."""
import numpy as np
import pytest
import rasterio

from hsirestore.io import Cube, create_cube, read_cube, write_cube


def _meta(bands, nodata=None):
    return Cube(np.zeros((bands, 1, 1), np.float32), wavelengths=np.linspace(450, 650, bands),
                wavelength_units="nm", nodata=nodata)


def _data():
    data = np.random.default_rng(3).random((3, 12, 10), dtype=np.float32) * 5000
    data[:, 4, 4] = np.nan
    data[0, 7, 2] = np.inf
    return data


def _stream(path, data, nodata, dtype):
    sink = create_cube(path, _meta(data.shape[0], nodata), data.shape, dtype=dtype)
    for r0 in range(0, data.shape[1], 5):
        for c0 in range(0, data.shape[2], 4):
            sink.write_window(r0, c0, data[:, r0:r0 + 5, c0:c0 + 4])
    sink.commit()


@pytest.mark.parametrize("suffix", [".hdr", ".tif", ".h5"])
@pytest.mark.parametrize("dtype,nodata", [("float32", None), ("uint16", None), ("uint16", 65535.0),
                                          ("float32", -1.0)])
def test_streamed_invalid_pixels(tmp_path, suffix, dtype, nodata):
    data = _data()
    given = data.copy()
    ok = np.isfinite(data).all(axis=0)
    path = tmp_path / f"s{suffix}"
    _stream(path, data, nodata, dtype)
    np.testing.assert_array_equal(data, given)  # blocks are never modified
    back = read_cube(path)
    expect = data if dtype == "float32" else np.rint(data)
    np.testing.assert_allclose(back.data[:, ok], expect[:, ok], rtol=1e-6)
    if dtype == "uint16" and nodata is None and suffix == ".hdr":
        # ENVI has no mask: an integer file without nodata stores 0 and cannot flag the pixel
        assert (back.data[:, ~ok] == 0).all()
    else:
        assert back.valid is not None and (back.valid == ok).all()


@pytest.mark.parametrize("suffix", [".hdr", ".tif"])
def test_in_memory_invalid_pixels_match_streamed(tmp_path, suffix):
    data = _data()
    ok = np.isfinite(data).all(axis=0)
    clean = np.where(np.isfinite(data), data, 0).astype(np.float32)
    for dtype, nodata in [("float32", None), ("uint16", None), ("float32", -1.0)]:
        cube = _meta(3, nodata).with_data(clean, valid=ok)
        a, b = tmp_path / f"a_{dtype}_{nodata}{suffix}", tmp_path / f"b_{dtype}_{nodata}{suffix}"
        write_cube(cube, a, dtype=dtype)
        _stream(b, data, nodata, dtype)
        ra, rb = read_cube(a), read_cube(b)
        np.testing.assert_array_equal(ra.data, rb.data)
        if not (suffix == ".hdr" and dtype == "uint16"):
            assert (ra.valid == ok).all() and (rb.valid == ok).all()


def test_geotiff_dataset_mask_is_standard_gdal(tmp_path):
    data = _data()
    _stream(tmp_path / "m.tif", data, None, "uint16")
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.nodata is None
        mask = ds.dataset_mask()
    assert (mask[4, 4] == 0) and (mask[7, 2] == 0) and (mask == 0).sum() == 2
