"""Windowed HDF5 reading (Hdf5File via open_cube) and writing (Hdf5Sink via create_cube)."""
import h5py
import numpy as np
import pytest

from hsirestore.errors import OutputExistsError
from hsirestore.io import Cube, create_cube, open_cube, read_cube, write_cube
from hsirestore.io.cube import ArraySource
from hsirestore.io.hdf5 import Hdf5Sink

WINDOWS = [(0, 9, 0, 11), (2, 7, 3, 10), (8, 9, 10, 11), (0, 1, 0, 11)]


def _windows_match(path, **kw):
    """Every window of open_cube equals the slice of read_cube (NaN where read_cube says invalid)."""
    whole = read_cube(path, **kw)
    src = open_cube(path, **kw)
    try:
        assert not isinstance(src, ArraySource)  # windows are read from the file, not loaded whole
        assert src.shape == whole.shape
        assert src.meta.shape == (whole.bands, 1, 1)
        for name in ("source_dtype", "nodata", "wavelength_units", "crs", "transform", "band_names", "attrs"):
            assert getattr(src.meta, name) == getattr(whole, name), name
        for name in ("wavelengths", "fwhm"):
            a, b = getattr(src.meta, name), getattr(whole, name)
            assert (a is None and b is None) or np.array_equal(a, b), name
        for r0, r1, c0, c1 in WINDOWS:
            r0, r1 = min(r0, whole.rows - 1), min(r1, whole.rows)
            c0, c1 = min(c0, whole.cols - 1), min(c1, whole.cols)
            win = src.read_window(r0, r1, c0, c1)
            assert win.dtype == np.float32 and win.shape == (whole.bands, r1 - r0, c1 - c0)
            ref = whole.data[:, r0:r1, c0:c1]
            ok = np.ones(ref.shape[1:], bool) if whole.valid is None else whole.valid[r0:r1, c0:c1]
            np.testing.assert_array_equal(win[:, ok], ref[:, ok])
        return whole, src.read_window(0, whole.rows, 0, whole.cols)
    finally:
        src.close()


def test_bands_first_with_metadata(tmp_path):
    rng = np.random.default_rng(0)
    cube = Cube(rng.random((4, 9, 11), dtype=np.float32) * 100, wavelengths=[450, 500, 550, 600],
                wavelength_units="nm", fwhm=[10.0] * 4, band_names=list("abcd"), crs="EPSG:32633",
                transform=(30.0, 0.0, 5e5, 0.0, -30.0, 4e6), nodata=-1.0)
    cube.data[:, 3, 4] = -1.0
    write_cube(cube, tmp_path / "c.h5")
    whole, full = _windows_match(tmp_path / "c.h5")
    assert whole.valid is not None and not whole.valid[3, 4]
    assert (full[:, 3, 4] == -1).all()  # nodata is left to the engine (meta.nodata)


def test_bands_last_without_layout_attr(tmp_path):
    a = np.random.default_rng(1).random((9, 11, 5)).astype(">f4")  # rows, cols, bands, big-endian
    with h5py.File(tmp_path / "bl.h5", "w") as f:
        f.create_dataset("img", data=a, chunks=(4, 4, 5), compression="gzip")
        f["wavelengths"] = np.linspace(400, 700, 5)
    whole, full = _windows_match(tmp_path / "bl.h5")
    assert whole.shape == (5, 9, 11)
    np.testing.assert_array_equal(full, np.moveaxis(a, -1, 0).astype(np.float32))
    np.testing.assert_allclose(whole.wavelengths, np.linspace(400, 700, 5))


def test_explicit_layout_and_var(tmp_path):
    a = np.random.default_rng(2).random((6, 6, 6)).astype(np.float32)
    with h5py.File(tmp_path / "sq.h5", "w") as f:
        f["x"] = a
        f["y"] = a[0]
    _windows_match(tmp_path / "sq.h5", var="x", layout="bands-last")
    _windows_match(str(tmp_path / "sq.h5") + ":/x", layout="bands-first")


def test_scaled_uint16_cave_like(tmp_path):
    raw = (np.arange(3 * 9 * 11).reshape(3, 9, 11) * 97 % 4096).astype(np.uint16)
    raw[:, 0, 0] = 4095
    with h5py.File(tmp_path / "cave.h5", "w") as f:
        g = f.create_group("scene")
        g["cube"] = raw
        g["cube"].attrs["scale"] = 1 / 4095
        g["cube"].attrs["nodata"] = 4095
        g["wavelength_nm"] = np.array([400.0, 410, 420])
    whole, full = _windows_match(tmp_path / "cave.h5")
    src = open_cube(tmp_path / "cave.h5")
    try:
        assert src.meta.source_dtype == "float32" and src.meta.attrs["stored_dtype"] == "uint16"
        assert src.meta.attrs["dataset"] == "/scene/cube"
        # the scaled nodata matches the scaled stored value exactly (the engine compares ==)
        assert (src.read_window(0, 1, 0, 1) == src.meta.nodata).all()
    finally:
        src.close()
    assert whole.valid is not None and not whole.valid[0, 0]
    np.testing.assert_allclose(full[:, 1:, 1:], raw[:, 1:, 1:] / 4095, rtol=1e-6)


def test_two_d_dataset(tmp_path):
    m = np.random.default_rng(3).random((9, 11)).astype(np.float64)
    with h5py.File(tmp_path / "mask.h5", "w") as f:
        f["mask"] = m
    whole, full = _windows_match(tmp_path / "mask.h5")
    assert whole.shape == (1, 9, 11) and full.shape == (1, 9, 11)
    np.testing.assert_array_equal(full[0], m.astype(np.float32))


def test_stored_valid_dataset_reads_as_nan(tmp_path):
    data = np.random.default_rng(4).random((3, 9, 11)).astype(np.float32)
    data[1, 5, 5] = np.nan
    valid = np.ones((9, 11), np.uint8)
    valid[2, 3] = valid[8, 10] = 0
    with h5py.File(tmp_path / "v.h5", "w") as f:
        g = f.create_group("g")
        g["cube"] = data
        g["valid"] = valid
    whole, full = _windows_match(str(tmp_path / "v.h5") + ":/g/cube")
    assert whole.valid.sum() == 9 * 11 - 3
    assert np.isnan(full[:, 2, 3]).all() and np.isnan(full[:, 8, 10]).all()
    assert np.isnan(full[1, 5, 5]) and not np.isnan(full[0, 5, 5])  # as stored
    assert np.isfinite(np.delete(full.reshape(3, -1), [2 * 11 + 3, 8 * 11 + 10, 5 * 11 + 5], axis=1)).all()


def test_open_errors_match_read(tmp_path):
    from hsirestore.errors import AmbiguousInputError, FormatError

    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros((3, 4, 5), np.float32)
        f["b"] = np.zeros((3, 4, 5), np.float32)
        f["s"] = np.array([b"text"] * 3)
        f["sq"] = np.zeros((4, 4, 4), np.float32)
    for kw, err, match in [({}, AmbiguousInputError, "several datasets"),
                           ({"var": "nope"}, FormatError, "no dataset"),
                           ({"var": "s"}, FormatError, "not numeric"),
                           ({"var": "sq"}, AmbiguousInputError, "--layout")]:
        for fn in (read_cube, open_cube):
            with pytest.raises(err, match=match):
                fn(tmp_path / "two.h5", **kw)
    with pytest.raises(FormatError, match="not found"):
        open_cube(tmp_path / "missing.h5")


def _meta(bands=4, nodata=None):
    return Cube(np.zeros((bands, 1, 1), np.float32), wavelengths=np.linspace(450, 650, bands),
                wavelength_units="nm", fwhm=np.full(bands, 10.0), nodata=nodata,
                band_names=[f"b{i}" for i in range(bands)], crs="EPSG:4326",
                transform=(0.1, 0.0, 10.0, 0.0, -0.1, 50.0), source_dtype="float32",
                attrs={"note": "hello", "n": 3})


def _write_in_blocks(sink, data, step=(7, 5)):
    _, rows, cols = data.shape
    for r0 in range(0, rows, step[0]):
        for c0 in range(0, cols, step[1]):
            sink.write_window(r0, c0, data[:, r0:r0 + step[0], c0:c0 + step[1]])


@pytest.mark.parametrize("target", ["s.h5", "s.h5:/group/out"])
def test_sink_roundtrip_data_and_metadata(tmp_path, target):
    data = np.random.default_rng(5).random((4, 20, 300), dtype=np.float32) * 100
    meta = _meta()
    path = str(tmp_path / target)
    sink = create_cube(path, meta, data.shape)
    assert isinstance(sink, Hdf5Sink)
    _write_in_blocks(sink, data)
    assert not (tmp_path / "s.h5").exists()  # nothing published before commit
    sink.commit()
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no temporary file left
    back = read_cube(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.valid is None and back.source_dtype == "float32"
    np.testing.assert_allclose(back.wavelengths, meta.wavelengths)
    np.testing.assert_allclose(back.fwhm, meta.fwhm)
    assert back.wavelength_units == "nm" and back.band_names == meta.band_names
    assert back.crs == "EPSG:4326" and back.transform == meta.transform
    # the same attributes write_hdf5 stores
    write_cube(meta.with_data(data), str(tmp_path / "ref.h5") + (target[4:] if ":" in target else ""))
    key = "group/out" if ":" in target else "cube"
    with h5py.File(tmp_path / "s.h5") as f, h5py.File(tmp_path / "ref.h5") as g:
        ds, ref = f[key], g[key]
        assert sorted(ds.attrs) == sorted(ref.attrs)
        assert ds.attrs["attr_note"] == "hello" and ds.attrs["attr_n"] == 3
        assert ds.attrs["layout"] == "bands-first"
        assert ds.compression == "gzip" and ds.chunks is not None
    # usual permissions (not the 0600 of a mkstemp file)
    assert (tmp_path / "s.h5").stat().st_mode == (tmp_path / "ref.h5").stat().st_mode


def test_sink_uint16_nodata_and_invalid_pixels(tmp_path):
    data = np.random.default_rng(6).random((3, 12, 10), dtype=np.float32) * 5000
    data[:, 4, 4] = np.nan  # what the tiled engine writes for invalid input pixels
    data[0, 7, 2] = np.inf
    given = data.copy()
    sink = create_cube(tmp_path / "u.h5", _meta(3), data.shape, dtype="uint16")
    _write_in_blocks(sink, data, step=(5, 4))
    sink.commit()
    np.testing.assert_array_equal(data, given)  # the caller's blocks are not modified
    back = read_cube(tmp_path / "u.h5")
    assert back.source_dtype == "uint16"
    ok = np.isfinite(data).all(axis=0)
    np.testing.assert_array_equal(back.data[:, ok], np.rint(data[:, ok]))
    assert back.valid is not None and (back.valid == ok).all()
    with h5py.File(tmp_path / "u.h5") as f:
        assert f["cube"].dtype == np.uint16 and (f["cube"][:, 4, 4] == 0).all()
    # with a nodata value, invalid pixels are written as nodata
    sink = create_cube(tmp_path / "n.h5", _meta(3, nodata=-1.0), data.shape)
    _write_in_blocks(sink, data, step=(5, 4))
    sink.commit()
    back = read_cube(tmp_path / "n.h5")
    assert back.nodata == -1.0 and (back.valid == ok).all()
    with h5py.File(tmp_path / "n.h5") as f:
        assert (f["cube"][:, 4, 4] == -1).all() and (f["cube"][:, 7, 2] == -1).all()
    src = open_cube(tmp_path / "n.h5")
    try:
        win = src.read_window(0, 12, 0, 10)
        assert np.isnan(win[:, ~ok]).all() and np.isfinite(win[:, ok]).all()
    finally:
        src.close()


def test_sink_refuses_overwrite_and_abort_cleans_up(tmp_path):
    data = np.ones((2, 5, 6), np.float32)
    write_cube(Cube(data * 7), tmp_path / "o.h5")
    before = (tmp_path / "o.h5").read_bytes()
    with pytest.raises(OutputExistsError):
        create_cube(tmp_path / "o.h5", _meta(2), data.shape)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]
    # force: written in a temporary file, published on commit only
    sink = create_cube(tmp_path / "o.h5", _meta(2), data.shape, force=True)
    sink.write_window(0, 0, data)
    assert len(list(tmp_path.iterdir())) == 2 and (tmp_path / "o.h5").read_bytes() == before
    sink.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]
    assert (tmp_path / "o.h5").read_bytes() == before
    sink.abort()  # twice is harmless
    # a target that appears while writing is not replaced without force
    sink = create_cube(tmp_path / "late.h5", _meta(2), data.shape)
    sink.write_window(0, 0, data)
    write_cube(Cube(data), tmp_path / "late.h5")
    late = (tmp_path / "late.h5").read_bytes()
    with pytest.raises(OutputExistsError, match="appeared"):
        sink.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.h5", "o.h5"]
    assert (tmp_path / "late.h5").read_bytes() == late
    sink = create_cube(tmp_path / "o.h5", _meta(2), data.shape, force=True)
    sink.write_window(0, 0, data)
    sink.commit()
    np.testing.assert_array_equal(read_cube(tmp_path / "o.h5").data, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.h5", "o.h5"]


def test_sink_rejects_blocks_that_do_not_fit(tmp_path):
    from hsirestore.errors import ShapeError

    sink = create_cube(tmp_path / "x.h5", _meta(2), (2, 5, 6))
    try:
        with pytest.raises(ShapeError):
            sink.write_window(3, 0, np.zeros((2, 3, 6), np.float32))
        with pytest.raises(ShapeError):
            sink.write_window(0, 0, np.zeros((3, 5, 6), np.float32))
    finally:
        sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_stream_roundtrip_through_windows(tmp_path):
    """open_cube -> create_cube window by window reproduces the cube and its metadata."""
    rng = np.random.default_rng(7)
    cube = Cube(rng.random((5, 33, 40), dtype=np.float32), wavelengths=np.linspace(400, 800, 5),
                band_names=list("abcde"))
    write_cube(cube, tmp_path / "in.h5")
    src = open_cube(tmp_path / "in.h5")
    sink = create_cube(tmp_path / "out.h5", src.meta, src.shape)
    for r0 in range(0, 33, 16):
        for c0 in range(0, 40, 16):
            sink.write_window(r0, c0, src.read_window(r0, min(33, r0 + 16), c0, min(40, c0 + 16)))
    sink.commit()
    src.close()
    a, b = read_cube(tmp_path / "in.h5"), read_cube(tmp_path / "out.h5")
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.wavelengths, b.wavelengths)
    assert a.band_names == b.band_names and b.attrs == a.attrs


def test_real_cave_scene_windows(shared_data):
    path = shared_data / "cave" / "val" / "paints.h5"
    if not path.exists():
        pytest.skip("CAVE val scene missing")
    whole = read_cube(path)
    src = open_cube(path)
    try:
        assert not isinstance(src, ArraySource) and src.shape == whole.shape
        np.testing.assert_array_equal(src.read_window(100, 228, 300, 428), whole.data[:, 100:228, 300:428])
        np.testing.assert_array_equal(src.meta.wavelengths, whole.wavelengths)
        assert src.meta.source_dtype == whole.source_dtype and src.meta.attrs == whole.attrs
    finally:
        src.close()


def test_sink_commit_failure_leaves_no_temporary_file(tmp_path, monkeypatch):
    import hsirestore.io.hdf5 as h5mod

    data = np.ones((2, 5, 6), np.float32)
    sink = create_cube(tmp_path / "x.h5", _meta(2), data.shape)
    sink.write_window(0, 0, data)

    def boom(ds, meta):
        raise ValueError("attribute trouble")

    monkeypatch.setattr(h5mod, "_write_attrs", boom)
    with pytest.raises(ValueError, match="attribute trouble"):
        sink.commit()
    assert list(tmp_path.iterdir()) == []
