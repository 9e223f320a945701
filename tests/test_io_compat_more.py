"""More format compatibility: NaN pixels through the in-memory sources, the .mat band axis
from the wavelength vector, GeoTIFF wavelength units and band scale/offset, invalid pixels in
HDF5/.mat outputs, guessed wavelength units, complex .mat variables and HDF5 _FillValue."""
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io as sio
import tifffile
from rasterio.transform import from_origin

from hsirestore.errors import AmbiguousInputError, FormatError
from hsirestore.io import Cube, create_cube, open_cube, read_cube, write_cube
from hsirestore.io.common import guess_units


def _scene(bands=6, rows=10, cols=12, seed=0):
    return (np.random.default_rng(seed).random((bands, rows, cols)) * 0.7 + 0.05).astype(np.float32)


def _window_invalid(src):
    """Invalid pixels as streamed consumers (``info``, the tiled engine) see them."""
    block = np.asarray(src.read_window(0, src.shape[1], 0, src.shape[2]), np.float32)
    bad = ~np.isfinite(block).all(axis=0)
    nodata = src.meta.nodata
    if nodata is not None and np.isfinite(nodata):
        bad |= (block == np.float32(nodata)).all(axis=0)
    return bad


def _v73(path, arrays):
    """A MATLAB v7.3 file (HDF5 with the MATLAB header) holding MATLAB-shaped ``arrays``."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in arrays.items():
            ds = f.create_dataset(name, data=np.asarray(a).T)
            ds.attrs["MATLAB_class"] = np.bytes_("double" if np.asarray(a).dtype == np.float64 else "single")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")


# ---------------------------------------------------------------- 1. NaN pixels when streamed
def test_nan_pixels_of_v5_mat_and_page_stack_survive_open_cube(tmp_path):
    x = _scene()
    x[:, 2:4, 3:5] = np.nan
    x[1, 7, 7] = np.inf
    sio.savemat(tmp_path / "n.mat", {"cube": np.moveaxis(x, 0, -1)})
    tifffile.imwrite(tmp_path / "n.tif", x)  # one page per band, no GeoTIFF tags
    for name in ("n.mat", "n.tif"):
        cube = read_cube(tmp_path / name)
        assert int((~cube.valid).sum()) == 5 and np.isfinite(cube.data).all()
        src = open_cube(tmp_path / name)
        try:
            np.testing.assert_array_equal(_window_invalid(src), ~cube.valid)
            part = src.read_window(2, 4, 0, 4)  # partial windows too
            assert np.isnan(part[:, :, 3]).all() and np.isfinite(part[:, :, :3]).all()
        finally:
            src.close()
        assert cube.valid is not None  # the reader's cube is left as it was
        assert np.isfinite(cube.data).all()


def test_all_nan_mat_is_all_invalid_when_streamed(tmp_path):
    sio.savemat(tmp_path / "a.mat", {"cube": np.full((20, 20, 10), np.nan)})
    src = open_cube(tmp_path / "a.mat")
    assert _window_invalid(src).all()


def test_streamed_mat_nan_pixels_reach_the_output_as_invalid(tmp_path):
    x = _scene()
    x[:, 0:2, 0:2] = np.nan
    sio.savemat(tmp_path / "n.mat", {"cube": np.moveaxis(x, 0, -1)})
    src = open_cube(tmp_path / "n.mat")
    sink = create_cube(tmp_path / "o.h5", src.meta, src.shape)
    for r0 in range(0, src.shape[1], 4):
        sink.write_window(r0, 0, src.read_window(r0, min(r0 + 4, src.shape[1]), 0, src.shape[2]))
    sink.commit()
    back = read_cube(tmp_path / "o.h5")
    assert int((~back.valid).sum()) == 4 and not back.valid[:2, :2].any()


# ---------------------------------------------------------------- 2. .mat band axis
@pytest.mark.parametrize("v73", [False, True])
def test_mat_band_axis_follows_the_wavelength_vector(tmp_path, v73):
    x = _scene(bands=31, rows=20, cols=48)  # rows < bands: the smallest-axis rule picks rows
    wl = np.linspace(400, 700, 31)
    arrays = {"cube": np.moveaxis(x, 0, -1), "wavelength": wl[None]}
    path = tmp_path / "strip.mat"
    _v73(path, arrays) if v73 else sio.savemat(path, arrays)
    cube = read_cube(path)
    assert cube.shape == (31, 20, 48) and cube.wavelength_units == "nm"
    np.testing.assert_allclose(cube.data, x, rtol=1e-6)
    np.testing.assert_allclose(cube.wavelengths, wl)
    src = open_cube(path)
    try:
        assert src.shape == (31, 20, 48)
        np.testing.assert_allclose(src.read_window(3, 9, 5, 30), x[:, 3:9, 5:30], rtol=1e-6)
    finally:
        src.close()
    # written back: same MATLAB shape, wavelengths kept
    write_cube(cube, tmp_path / "out.mat")
    if v73:  # kept as v7.3 (HDF5 sees the MATLAB axes reversed)
        with h5py.File(tmp_path / "out.mat") as f:
            assert f["cube"].shape[::-1] == (20, 48, 31) and f["wavelength"].size == 31
    else:
        out = sio.loadmat(tmp_path / "out.mat")
        assert out["cube"].shape == (20, 48, 31) and out["wavelength"].size == 31


def test_mat_bands_first_with_a_wavelength_vector(tmp_path):
    x = _scene(bands=31, rows=20, cols=48)
    sio.savemat(tmp_path / "bf.mat", {"cube": x, "wl": np.linspace(400, 700, 31)})
    cube = read_cube(tmp_path / "bf.mat")
    assert cube.shape == (31, 20, 48) and cube.wavelengths is not None


def test_mat_large_band_count_decided_by_the_vector(tmp_path):
    x = _scene(bands=40, rows=16, cols=16)
    sio.savemat(tmp_path / "c.mat", {"cube": np.moveaxis(x, 0, -1), "wavelength": np.linspace(400, 1000, 40)})
    assert read_cube(tmp_path / "c.mat").shape == (40, 16, 16)


def test_mat_ambiguous_shapes_raise(tmp_path):
    sio.savemat(tmp_path / "sq.mat", {"cube": np.zeros((31, 31, 31), np.float32)})
    with pytest.raises(AmbiguousInputError):
        read_cube(tmp_path / "sq.mat")
    # the vector fits both end axes: still ambiguous
    sio.savemat(tmp_path / "both.mat", {"cube": np.zeros((31, 48, 31), np.float32),
                                        "wavelength": np.linspace(400, 700, 31)})
    with pytest.raises(AmbiguousInputError):
        read_cube(tmp_path / "both.mat")
    with pytest.raises(AmbiguousInputError):
        open_cube(tmp_path / "both.mat")
    assert read_cube(tmp_path / "both.mat", layout="bands-last").shape == (31, 31, 48)


def test_mat_unambiguous_shapes_unchanged(tmp_path):
    x = _scene(bands=5, rows=12, cols=9)
    sio.savemat(tmp_path / "a.mat", {"cube": np.moveaxis(x, 0, -1)})
    sio.savemat(tmp_path / "b.mat", {"cube": x})
    # a vector that fits no end axis is ignored (and so are the wavelengths)
    sio.savemat(tmp_path / "c.mat", {"cube": np.moveaxis(x, 0, -1), "wavelength": np.arange(7.0)})
    for name in ("a.mat", "b.mat", "c.mat"):
        cube = read_cube(tmp_path / name)
        assert cube.shape == (5, 12, 9)
        np.testing.assert_allclose(cube.data, x, rtol=1e-6)


# ---------------------------------------------------------------- 3. GeoTIFF units, scale/offset
def _tif(path, data, **kw):
    prof = dict(driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                dtype=data.dtype.name, crs="EPSG:32633", transform=from_origin(500000, 4200000, 2, 2))
    prof.update(kw)
    return rasterio.open(path, "w", **prof)


def test_geotiff_per_band_wavelength_units(tmp_path):
    x = _scene()
    with _tif(tmp_path / "um.tif", x) as ds:
        ds.write(x)
        for b in range(x.shape[0]):
            ds.update_tags(b + 1, wavelength=str(0.4 + 0.05 * b), wavelength_units="Micrometers")
    cube = read_cube(tmp_path / "um.tif")
    assert cube.wavelength_units == "Micrometers"
    np.testing.assert_allclose(cube.wavelengths, 0.4 + 0.05 * np.arange(x.shape[0]))
    write_cube(cube, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as ds:  # GDAL's convention is written too
        assert ds.tags(1)["wavelength_units"] == "Micrometers"
        assert float(ds.tags(2, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"]) == pytest.approx(0.45)
    assert read_cube(tmp_path / "out.tif").wavelength_units == "Micrometers"


def test_geotiff_imagery_domain_wavelengths(tmp_path):
    x = _scene(bands=3)
    with _tif(tmp_path / "im.tif", x) as ds:
        ds.write(x)
        for b in range(3):
            ds.update_tags(b + 1, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=str(0.45 + 0.1 * b), FWHM_UM="0.01")
    cube = read_cube(tmp_path / "im.tif")
    assert cube.wavelength_units == "um"
    np.testing.assert_allclose(cube.wavelengths, [0.45, 0.55, 0.65])
    np.testing.assert_allclose(cube.fwhm, [0.01] * 3)


@pytest.mark.parametrize("offset", [0.0, 0.05])
def test_geotiff_scale_offset_applied_once(tmp_path, offset):
    refl = _scene()
    counts = np.rint(refl * 10000).astype(np.int16)
    counts[:, :2, :3] = -9999
    with _tif(tmp_path / "i16.tif", counts, nodata=-9999) as ds:
        ds.write(counts)
        ds.scales = [1e-4] * counts.shape[0]
        ds.offsets = [offset] * counts.shape[0]
    cube = read_cube(tmp_path / "i16.tif")
    assert cube.source_dtype == "float32" and cube.nodata == -9999
    assert int((~cube.valid).sum()) == 6 and (cube.data[:, :2, :3] == -9999).all()
    expect = counts.astype(np.float32) * np.float32(1e-4) + np.float32(offset)
    np.testing.assert_allclose(cube.data[:, cube.valid], expect[:, cube.valid], rtol=1e-6)
    src = open_cube(tmp_path / "i16.tif")
    try:  # windows are scaled the same way; nodata stays recognisable
        np.testing.assert_array_equal(src.read_window(0, 10, 0, 12), cube.data)
        np.testing.assert_array_equal(_window_invalid(src), ~cube.valid)
    finally:
        src.close()

    # float output: physical values, no scale left to apply again
    write_cube(cube, tmp_path / "f.tif")
    with rasterio.open(tmp_path / "f.tif") as ds:
        assert ds.dtypes[0] == "float32" and set(ds.scales) == {1.0} and set(ds.offsets) == {0.0}
    back = read_cube(tmp_path / "f.tif")
    np.testing.assert_allclose(back.data, cube.data)

    # integer output: counts with the same scales, in memory and streamed
    write_cube(cube, tmp_path / "i.tif", dtype="int16")
    sink = create_cube(tmp_path / "s.tif", cube, cube.shape, dtype="int16")
    for r0 in range(0, 10, 4):
        sink.write_window(r0, 0, cube.data[:, r0:r0 + 4])
    sink.commit()
    for name in ("i.tif", "s.tif"):
        with rasterio.open(tmp_path / name) as ds:
            assert ds.dtypes[0] == "int16" and ds.nodata == -9999
            assert ds.scales[0] == pytest.approx(1e-4, rel=1e-12) and ds.offsets[0] == offset
            np.testing.assert_array_equal(ds.read(), counts)
        back = read_cube(tmp_path / name)
        np.testing.assert_allclose(back.data, cube.data, atol=1e-6)


def test_geotiff_scaled_integer_output_keeps_valid_values_off_nodata(tmp_path):
    """A restored value that rounds to the nodata count (uint16 counts, scale 1e-3, nodata 0)
    is written one count away, in memory and streamed, so it is not read back as nodata;
    real nodata pixels stay nodata."""
    counts = np.full((3, 6, 8), 500, np.uint16)
    counts[:, 0, 0] = 0  # a nodata pixel
    with _tif(tmp_path / "u16.tif", counts, nodata=0) as ds:
        ds.write(counts)
        ds.scales = [1e-3] * 3
    cube = read_cube(tmp_path / "u16.tif")
    assert int((~cube.valid).sum()) == 1
    cube.data[1, 2, 3] = 0.0002  # a dark restored value: 0.2 counts -> rounds to 0 = nodata
    write_cube(cube, tmp_path / "o.tif", dtype="uint16")
    sink = create_cube(tmp_path / "s.tif", cube, cube.shape, dtype="uint16")
    sink.write_window(0, 0, cube.data)
    sink.commit()
    for name in ("o.tif", "s.tif"):
        with rasterio.open(tmp_path / name) as ds:
            got = ds.read()
        assert got[1, 2, 3] == 1 and (got[:, 0, 0] == 0).all(), name
        back = read_cube(tmp_path / name)
        assert int((~back.valid).sum()) == 1 and back.valid[2, 3], name
        assert back.data[1, 2, 3] == pytest.approx(1e-3, rel=1e-6)


# ---------------------------------------------------------------- 4. invalid pixels in HDF5/.mat
def _invalid_cube(nodata):
    x = _scene(bands=3) * 1000
    x[:, 1, 1] = np.nan
    x[0, 2, 2] = np.inf
    valid = np.ones(x.shape[1:], bool)
    valid[5, 5] = False
    return Cube(x, valid=valid, nodata=nodata), [(1, 1), (2, 2), (5, 5)]


@pytest.mark.parametrize("dtype,nodata,expect", [("float32", None, np.nan), ("float32", -9999.0, -9999.0),
                                                 ("int16", None, 0), ("int16", -9999.0, -9999),
                                                 ("uint16", float("nan"), 0)])
def test_write_hdf5_invalid_pixels_like_the_sink(tmp_path, dtype, nodata, expect):
    cube, bad = _invalid_cube(nodata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        write_cube(cube, tmp_path / "m.h5", dtype=dtype)
        sink = create_cube(tmp_path / "s.h5", cube, cube.shape, dtype=dtype)
        data = cube.data.copy()
        data[:, ~cube.valid] = np.nan
        sink.write_window(0, 0, data)
        sink.commit()
    with h5py.File(tmp_path / "m.h5") as f, h5py.File(tmp_path / "s.h5") as g:
        m, s = f["cube"][...], g["cube"][...]
        np.testing.assert_array_equal(m, s)
        np.testing.assert_array_equal(f["valid"][...], g["valid"][...])
        for r, c in bad:
            np.testing.assert_array_equal(m[:, r, c], np.full(3, expect, m.dtype))
            assert f["valid"][r, c] == 0
    back = read_cube(tmp_path / "m.h5")
    assert int((~back.valid).sum()) == 3


@pytest.mark.parametrize("dtype,nodata,expect", [("float32", None, np.nan), ("float32", -9999.0, -9999.0),
                                                 ("int16", None, 0), ("int16", -9999.0, -9999),
                                                 ("uint8", float("nan"), 0)])
def test_write_mat_invalid_pixels(tmp_path, dtype, nodata, expect):
    cube, bad = _invalid_cube(nodata)
    if dtype == "uint8":
        cube = cube.with_data(cube.data / 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_cube(cube, tmp_path / "m.mat", dtype=dtype)
    m = sio.loadmat(tmp_path / "m.mat")["cube"]
    assert m.dtype == np.dtype(dtype)
    for r, c in bad:
        np.testing.assert_array_equal(m[r, c], np.full(3, expect, m.dtype))
    ok = np.ones(cube.shape[1:], bool)
    for r, c in bad:
        ok[r, c] = False
    assert np.isfinite(m[ok]).all()


def test_integer_outputs_print_no_cast_warning(tmp_path):
    cube, _ = _invalid_cube(-9999.0)
    write_cube(cube, tmp_path / "c.h5")
    code = ("import warnings; warnings.simplefilter('error');"
            "from hsirestore.io import read_cube, write_cube;"
            f"c = read_cube({str(tmp_path / 'c.h5')!r});"
            f"write_cube(c, {str(tmp_path / 'o.h5')!r}, dtype='int16');"
            f"write_cube(c, {str(tmp_path / 'o.mat')!r}, dtype='int16')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and "RuntimeWarning" not in run.stderr, run.stderr


# ---------------------------------------------------------------- 5. units guessed from values
def test_guess_units():
    assert guess_units(None) is None
    assert guess_units([0.4, 0.7]) == "um" and guess_units([2.5, 25.0]) == "um"
    assert guess_units([400.0, 700.0]) == "nm" and guess_units([0.4, 0.7], "Nanometers") == "Nanometers"


def test_units_inferred_for_mat_hdf5_geotiff(tmp_path):
    x = _scene(bands=4)
    um, nm = np.linspace(0.45, 0.65, 4), np.linspace(450, 650, 4)
    sio.savemat(tmp_path / "um.mat", {"cube": np.moveaxis(x, 0, -1), "wavelength": um})
    sio.savemat(tmp_path / "nm.mat", {"cube": np.moveaxis(x, 0, -1), "wavelength": nm})
    sio.savemat(tmp_path / "wnm.mat", {"cube": np.moveaxis(x, 0, -1), "wavelength_nm": nm})
    with h5py.File(tmp_path / "um.h5", "w") as f:
        f.create_dataset("cube", data=x).attrs["wavelength"] = um
    with h5py.File(tmp_path / "given.h5", "w") as f:
        ds = f.create_dataset("cube", data=x)
        ds.attrs["wavelength"] = um
        ds.attrs["wavelength_units"] = "micrometers"
    with _tif(tmp_path / "um.tif", x) as ds:
        ds.write(x)
        for b in range(4):
            ds.update_tags(b + 1, wavelength=str(um[b]))
    assert read_cube(tmp_path / "um.mat").wavelength_units == "um"
    assert read_cube(tmp_path / "nm.mat").wavelength_units == "nm"
    assert read_cube(tmp_path / "wnm.mat").wavelength_units == "nm"
    assert read_cube(tmp_path / "um.h5").wavelength_units == "um"
    assert read_cube(tmp_path / "given.h5").wavelength_units == "micrometers"
    assert read_cube(tmp_path / "um.tif").wavelength_units == "um"
    _v73(tmp_path / "um73.mat", {"cube": np.moveaxis(x, 0, -1), "wavelength": um[None]})
    assert read_cube(tmp_path / "um73.mat").wavelength_units == "um"
    # written back, micrometres stay micrometres
    write_cube(read_cube(tmp_path / "um.mat"), tmp_path / "back.h5")
    assert read_cube(tmp_path / "back.h5").wavelength_units == "um"


# ---------------------------------------------------------------- 6. complex .mat, _FillValue
def test_complex_mat_variable_is_refused(tmp_path):
    z = (np.ones((8, 8, 5)) + 1j).astype(np.complex64)
    sio.savemat(tmp_path / "c.mat", {"cube": z})
    for kw in ({}, {"var": "cube"}):
        with pytest.raises(FormatError, match="complex data"):
            read_cube(tmp_path / "c.mat", **kw)
    # v7.3 stores complex numbers as a real/imag compound type
    ctype = np.dtype([("real", "<f4"), ("imag", "<f4")])
    with h5py.File(tmp_path / "c73.mat", "w", userblock_size=512) as f:
        f.create_dataset("cube", data=np.zeros((5, 8, 8), ctype)).attrs["MATLAB_class"] = np.bytes_("single")
    with open(tmp_path / "c73.mat", "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    with pytest.raises(FormatError, match="complex data"):
        read_cube(tmp_path / "c73.mat")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("cube", data=np.zeros((5, 8, 8), np.complex64))
    with pytest.raises(FormatError, match="complex data"):
        read_cube(tmp_path / "c.h5")


def test_hdf5_fillvalue_is_nodata(tmp_path):
    x = _scene(bands=4)
    x[:, 0, :3] = -1.0
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("cube", data=x).attrs["_FillValue"] = np.float32(-1.0)
    with h5py.File(tmp_path / "both.h5", "w") as f:
        ds = f.create_dataset("cube", data=x)
        ds.attrs["_FillValue"] = np.float32(-1.0)
        ds.attrs["nodata"] = -2.0
    cube = read_cube(tmp_path / "f.h5")
    assert cube.nodata == -1.0 and int((~cube.valid).sum()) == 3
    src = open_cube(tmp_path / "f.h5")
    try:
        assert src.meta.nodata == -1.0 and int(_window_invalid(src).sum()) == 3
    finally:
        src.close()
    both = read_cube(tmp_path / "both.h5")
    assert both.nodata == -2.0 and both.valid is None
