"""Round-trip, format detection, ENVI variants and bad-input errors for hsirestore.io."""
import hashlib

import h5py
import numpy as np
import pytest

from hsirestore.errors import AmbiguousInputError, FormatError, OutputError, OutputExistsError
from hsirestore.io import Cube, create_cube, detect_format, open_cube, read_cube, read_rgb, write_cube, write_rgb
from hsirestore.io.cube import ArraySource

WKT_EPSG = "EPSG:32633"


def make_cube(bands=4, rows=9, cols=11, geo=False, nodata=None):
    rng = np.random.default_rng(1)
    data = rng.random((bands, rows, cols), dtype=np.float32) * 100
    return Cube(data, wavelengths=np.linspace(450, 650, bands), wavelength_units="nm",
                fwhm=np.full(bands, 10.0), nodata=nodata,
                band_names=[f"b{i}" for i in range(bands)],
                crs=WKT_EPSG if geo else None,
                transform=(30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0) if geo else None)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix,geo,names", [(".hdr", True, True), (".tif", True, True),
                                              (".mat", False, False), (".h5", False, True)])
def test_roundtrip(tmp_path, suffix, geo, names):
    cube = make_cube(geo=geo, nodata=-9999.0)
    cube.data[:, 0, 0] = -9999.0
    files = write_cube(cube, tmp_path / f"c{suffix}")
    assert all(f.exists() for f in files)
    back = read_cube(files[0] if suffix != ".hdr" else tmp_path / "c.hdr")
    assert back.shape == cube.shape
    np.testing.assert_allclose(back.data[:, 1:, 1:], cube.data[:, 1:, 1:], rtol=1e-6)
    np.testing.assert_allclose(back.wavelengths, cube.wavelengths)
    assert back.wavelength_units == "nm"
    if suffix != ".mat":
        np.testing.assert_allclose(back.fwhm, cube.fwhm)
        assert back.nodata == -9999.0
        assert back.valid is not None and not back.valid[0, 0] and back.valid.sum() == 9 * 11 - 1
    if geo:
        assert back.crs and "32633" in back.crs or "UTM" in back.crs
        np.testing.assert_allclose(back.transform, cube.transform)
    if names:
        assert back.band_names == cube.band_names


def test_write_refuses_overwrite_and_bad_folder(tmp_path):
    cube = make_cube()
    write_cube(cube, tmp_path / "a.tif")
    with pytest.raises(OutputExistsError):
        write_cube(cube, tmp_path / "a.tif")
    write_cube(cube, tmp_path / "a.tif", force=True)
    with pytest.raises(OutputError):
        write_cube(cube, tmp_path / "missing" / "a.tif")


def test_uint16_dtype_clips_and_rounds(tmp_path):
    cube = make_cube(bands=2, rows=2, cols=2)
    cube.data[0, 0, 0] = -5
    cube.data[0, 0, 1] = 70000
    cube.data[0, 1, 0] = 2.6
    write_cube(cube, tmp_path / "u.hdr", dtype="uint16")
    back = read_cube(tmp_path / "u.hdr")
    assert back.source_dtype == "uint16"
    assert back.data[0, 0, 0] == 0 and back.data[0, 0, 1] == 65535 and back.data[0, 1, 0] == 3


def _raw_envi(tmp_path, arr, interleave, code, order="<", offset=0, extra=""):
    b, r, c = arr.shape
    layout = {"bsq": arr, "bil": arr.transpose(1, 0, 2), "bip": arr.transpose(1, 2, 0)}[interleave]
    dt = np.dtype({1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4",
                   14: "i8", 15: "u8"}[code]).newbyteorder(order)
    (tmp_path / "e.img").write_bytes(b"\0" * offset + np.ascontiguousarray(layout).astype(dt).tobytes())
    (tmp_path / "e.hdr").write_text(
        f"ENVI\nsamples = {c}\nlines = {r}\nbands = {b}\nheader offset = {offset}\n"
        f"data type = {code}\ninterleave = {interleave}\nbyte order = {1 if order == '>' else 0}\n"
        f"wavelength units = Micrometers\nwavelength = {{{', '.join(str(0.4 + 0.1 * i) for i in range(b))}}}\n"
        + extra)
    return tmp_path / "e.hdr"


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 12, 13, 14, 15])
@pytest.mark.parametrize("order", ["<", ">"])
def test_envi_variants(tmp_path, interleave, code, order):
    arr = np.arange(3 * 4 * 5).reshape(3, 4, 5) % 250
    hdr = _raw_envi(tmp_path, arr, interleave, code, order, offset=16)
    before = sha(tmp_path / "e.img")
    cube = read_cube(hdr)
    np.testing.assert_array_equal(cube.data, arr.astype(np.float32))
    assert cube.data.dtype == np.float32 and cube.data.dtype.isnative
    assert cube.wavelengths.size == 3 and cube.wavelength_units
    src = open_cube(hdr)
    np.testing.assert_array_equal(src.read_window(1, 3, 2, 5), arr[:, 1:3, 2:5])
    src.close()
    assert sha(tmp_path / "e.img") == before


def test_envi_nodata_and_nan(tmp_path):
    arr = np.ones((2, 3, 3), np.float32)
    arr[:, 0, 0] = -1
    arr[1, 2, 2] = np.nan
    hdr = _raw_envi(tmp_path, arr, "bsq", 4, extra="data ignore value = -1\n")
    cube = read_cube(hdr)
    assert cube.nodata == -1
    assert cube.valid.sum() == 7 and not cube.valid[0, 0] and not cube.valid[2, 2]
    assert np.isfinite(cube.data).all() and cube.data[1, 2, 2] == 0


def test_envi_errors(tmp_path):
    arr = np.ones((2, 3, 3), np.float32)
    hdr = _raw_envi(tmp_path, arr, "bsq", 4)
    (tmp_path / "e.img").write_bytes((tmp_path / "e.img").read_bytes()[:-4])
    with pytest.raises(FormatError, match="truncated"):
        read_cube(hdr)
    (tmp_path / "e.img").write_bytes(b"\0" * (arr.nbytes + 8))
    assert read_cube(hdr).shape == arr.shape  # trailing bytes are ignored, as GDAL does
    (tmp_path / "e.img").unlink()
    with pytest.raises(FormatError, match="without its data file"):
        read_cube(hdr)
    hdr = _raw_envi(tmp_path, arr, "bsq", 4)
    hdr.write_text(hdr.read_text().replace("data type = 4", "data type = 7"))
    with pytest.raises(FormatError, match="data type"):
        read_cube(hdr)
    hdr.write_text(hdr.read_text().replace("data type = 7", "data type = 6"))
    with pytest.raises(FormatError, match="complex"):
        read_cube(hdr)


def test_detect_format(tmp_path):
    assert detect_format(tmp_path / "x.hdr") == "envi"
    assert detect_format(tmp_path / "x.mat") == "mat"
    assert detect_format(str(tmp_path / "x.h5") + ":/cube") == "hdf5"
    assert detect_format(tmp_path / "x.png") == "rgb"
    assert detect_format(tmp_path / "x.tif") == "geotiff"
    write_cube(make_cube(), tmp_path / "a.h5")
    (tmp_path / "noext").write_bytes((tmp_path / "a.h5").read_bytes())
    assert detect_format(tmp_path / "noext") == "hdf5"
    (tmp_path / "junk.xyz").write_bytes(b"hello")
    with pytest.raises(FormatError, match="unknown format"):
        detect_format(tmp_path / "junk.xyz")


def test_mat_variants_and_ambiguity(tmp_path):
    import scipy.io

    a = np.random.default_rng(0).random((8, 9, 3)).astype(np.float32)  # rows, cols, bands
    scipy.io.savemat(tmp_path / "one.mat", {"rad": a, "wavelengths": np.array([400.0, 500, 600])})
    c = read_cube(tmp_path / "one.mat")
    np.testing.assert_allclose(c.data, np.moveaxis(a, -1, 0))
    np.testing.assert_allclose(c.wavelengths, [400, 500, 600])
    scipy.io.savemat(tmp_path / "two.mat", {"a": a, "b": a})
    with pytest.raises(AmbiguousInputError, match="a, b|'a'"):
        read_cube(tmp_path / "two.mat")
    np.testing.assert_allclose(read_cube(tmp_path / "two.mat", var="b").data, c.data)
    scipy.io.savemat(tmp_path / "mask.mat", {"mask": a[..., 0]})
    assert read_cube(tmp_path / "mask.mat").shape == (1, 8, 9)
    scipy.io.savemat(tmp_path / "sq.mat", {"x": np.zeros((5, 5, 5))})
    with pytest.raises(AmbiguousInputError, match="--layout"):
        read_cube(tmp_path / "sq.mat")
    assert read_cube(tmp_path / "sq.mat", layout="bands-last").shape == (5, 5, 5)
    # v7.3 = HDF5 with reversed axes: MATLAB (rows, cols, bands) is stored (bands, cols, rows)
    with h5py.File(tmp_path / "v73.mat", "w", userblock_size=512) as f:
        f["cube"] = a.T
    with open(tmp_path / "v73.mat", "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    np.testing.assert_allclose(read_cube(tmp_path / "v73.mat").data, c.data)


def test_hdf5_cave_layout_and_dataset_path(tmp_path):
    raw = (np.arange(3 * 4 * 5).reshape(3, 4, 5) * 60).astype(np.uint16)
    with h5py.File(tmp_path / "cave.h5", "w") as f:
        f["cube"] = raw
        f["cube"].attrs["scale"] = 1 / 4095
        f["wavelength_nm"] = np.array([400.0, 410, 420])
        f.create_group("g")["other"] = np.zeros((2, 4, 5), np.float32)
    c = read_cube(str(tmp_path / "cave.h5") + ":/cube")
    np.testing.assert_allclose(c.data, raw / 4095, rtol=1e-6)
    # scaled values are floats, not the stored counts (so no integer output / 1/65535 rule)
    assert c.data.max() <= 1 and c.source_dtype == "float32"
    assert c.attrs["stored_dtype"] == "uint16" and abs(c.attrs["scale"] - 1 / 4095) < 1e-12
    np.testing.assert_allclose(c.wavelengths, [400, 410, 420])
    assert read_cube(str(tmp_path / "cave.h5") + ":/g/other").shape == (2, 4, 5)


def test_streaming_envi_and_geotiff(tmp_path):
    cube = make_cube(bands=3, rows=20, cols=16, geo=True)
    for name in ("s.hdr", "s.tif"):
        sink = create_cube(tmp_path / name, cube, cube.shape)
        for r0 in range(0, 20, 7):
            sink.write_window(r0, 0, cube.data[:, r0:r0 + 7, :])
        assert not (tmp_path / name).exists()
        sink.commit()
        src = open_cube(tmp_path / name)
        assert src.shape == cube.shape
        np.testing.assert_allclose(src.read_window(3, 15, 2, 9), cube.data[:, 3:15, 2:9])
        np.testing.assert_allclose(src.meta.wavelengths, cube.wavelengths)
        src.close()


def test_tiff_page_stack(tmp_path):
    import tifffile

    a = np.random.default_rng(0).random((4, 6, 7)).astype(np.float32)
    tifffile.imwrite(tmp_path / "p.tif", a, photometric="minisblack")
    np.testing.assert_allclose(read_cube(tmp_path / "p.tif").data, a)
    assert detect_format(tmp_path / "p.tif") == "tiff"
    write_cube(make_cube(geo=True), tmp_path / "g.tif")
    assert detect_format(tmp_path / "g.tif") == "geotiff"


def test_rgb_8_and_16_bit(tmp_path):
    rgb = np.random.default_rng(0).random((3, 5, 6)).astype(np.float32)
    write_rgb(rgb, tmp_path / "a.png", bits=16)
    c = read_rgb(tmp_path / "a.png")
    assert c.attrs["stored_dtype"] == "uint16" and c.shape == (3, 5, 6)
    np.testing.assert_allclose(c.data, np.round(rgb * 65535) / 65535, atol=1e-6)
    write_rgb(rgb, tmp_path / "b.png")
    c8 = read_rgb(tmp_path / "b.png")
    assert c8.attrs["stored_dtype"] == "uint8" and c8.source_dtype == "float32"
    np.testing.assert_allclose(c8.data, rgb, atol=1 / 255)


def test_rgb_exif_orientation(tmp_path):
    from PIL import Image

    arr = np.zeros((4, 6, 3), np.uint8)
    arr[0, 0] = 255  # top-left red
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img.save(tmp_path / "o.jpg", exif=exif, quality=100)
    c = read_rgb(tmp_path / "o.jpg")
    assert c.shape == (3, 6, 4)
    assert c.data[0, 0, -1] > 0.8  # the red corner is now top-right


@pytest.mark.parametrize("suffix", [".hdr", ".tif", ".mat", ".h5", ".png"])
def test_inputs_never_modified(tmp_path, suffix):
    cube = make_cube(bands=3, geo=suffix == ".tif")
    if suffix == ".png":
        cube = Cube(np.clip(cube.data / 100, 0, 1))
    files = write_cube(cube, tmp_path / f"in{suffix}")
    before = {f: sha(f) for f in files}
    src = open_cube(tmp_path / f"in{suffix}")
    src.read_window(0, 3, 0, 3)
    src.close()
    read_cube(tmp_path / f"in{suffix}")
    assert {f: sha(f) for f in files} == before


def test_real_cave_scene(shared_data):
    path = shared_data / "cave" / "val" / "paints.h5"
    if not path.exists():
        pytest.skip("CAVE val scene missing")
    c = read_cube(path)
    assert c.shape == (31, 512, 512) and 0 <= c.data.min() and c.data.max() <= 1
    np.testing.assert_allclose(c.wavelengths[[0, -1]], [400, 700])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_processing_notes_kept_in_envi_and_geotiff(tmp_path):
    import rasterio

    cube = Cube(np.random.default_rng(0).random((3, 8, 9), dtype=np.float32),
                attrs={"restoration": "noise:sigma=30", "restoration_model": "hsivar {x}",
                       "dataset": "/cube", "flag": True, "nested": {"a": 1}})
    write_cube(cube, tmp_path / "out.hdr")
    desc = read_cube(tmp_path / "out.hdr").attrs["description"]
    assert "restoration = noise:sigma=30" in desc and "restoration_model = hsivar (x)" in desc
    assert "dataset" not in desc and "flag" not in desc and "nested" not in desc
    write_cube(cube, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as ds:
        tags = ds.tags()
    assert tags["hsirestore_restoration"] == "noise:sigma=30"
    assert "hsirestore_dataset" not in tags and "hsirestore_flag" not in tags


def _write_v73(path, **variables):
    """A MATLAB v7.3 file: each MATLAB-order array is stored transposed, as MATLAB does."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in variables.items():
            f.create_dataset(k, data=np.asarray(v).T)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM")


@pytest.mark.parametrize("order", ["bands-last", "bands-first", "2-D"])
def test_mat_v73_is_read_by_windows(tmp_path, order):
    from hsirestore.io.matfile import list_variables

    rng = np.random.default_rng(2)
    cube = rng.random((5, 13, 17), dtype=np.float32)  # (bands, rows, cols)
    matlab = {"bands-last": np.moveaxis(cube, 0, -1), "bands-first": cube, "2-D": cube[0]}[order]
    wl = np.linspace(400, 800, 5)
    _write_v73(tmp_path / "c.mat", cube=matlab, wavelength=wl[None, :])
    assert list_variables(tmp_path / "c.mat")["cube"] == matlab.shape
    expect = cube[:1] if order == "2-D" else cube
    whole = read_cube(tmp_path / "c.mat")
    np.testing.assert_array_equal(whole.data, expect)
    assert whole.attrs["mat_version"] == "7.3"
    src = open_cube(tmp_path / "c.mat")
    try:
        assert src.shape == expect.shape and not isinstance(src, ArraySource)
        np.testing.assert_array_equal(src.read_window(2, 9, 3, 11), expect[:, 2:9, 3:11])
        if order != "2-D":
            np.testing.assert_allclose(src.meta.wavelengths, wl)
    finally:
        src.close()


def test_mat_v73_errors(tmp_path):
    _write_v73(tmp_path / "two.mat", a=np.ones((4, 5, 3)), b=np.ones((4, 5, 3)))
    with pytest.raises(AmbiguousInputError, match="--var"):
        read_cube(tmp_path / "two.mat")
    with pytest.raises(FormatError, match="no variable 'c'"):
        read_cube(tmp_path / "two.mat", var="c")
    np.testing.assert_array_equal(read_cube(tmp_path / "two.mat", var="b").data, np.ones((3, 4, 5)))


def test_mat_v73_sink_streams_windows_matlab_style(tmp_path):
    """Cubes read from v7.3 (or too big for v5) are written window by window as v7.3, with
    the MATLAB header, MATLAB_class attributes and the (rows, cols, bands) variable."""
    from hsirestore.io.matfile import MatV73Sink

    cube = make_cube(bands=5, rows=21, cols=19)
    cube.attrs["mat_version"] = "7.3"
    data = cube.data.copy()
    data[:, 3, 4] = np.nan  # an invalid pixel
    sink = create_cube(tmp_path / "o.mat", cube, data.shape)
    assert isinstance(sink, MatV73Sink)
    for r0 in (0, 8, 16):
        for c0 in (0, 10):
            sink.write_window(r0, c0, data[:, r0:r0 + 8, c0:c0 + 10])
    assert not (tmp_path / "o.mat").exists()  # nothing published before commit
    sink.commit()
    assert open(tmp_path / "o.mat", "rb").read(19) == b"MATLAB 7.3 MAT-file"
    with h5py.File(tmp_path / "o.mat", "r") as f:
        assert f["cube"].shape == (5, 19, 21)  # MATLAB (21, 19, 5), reversed by HDF5
        assert f["cube"].attrs["MATLAB_class"] == b"single"
        assert f["wavelength"].attrs["MATLAB_class"] == b"double"
    back = read_cube(tmp_path / "o.mat")
    np.testing.assert_array_equal(back.data, np.nan_to_num(data, nan=0))  # readers zero invalid pixels
    np.testing.assert_allclose(back.wavelengths, cube.wavelengths)
    assert back.valid is not None and not back.valid[3, 4] and back.valid.sum() == 21 * 19 - 1
    # never overwrites without force; abort leaves no temporary file
    with pytest.raises(OutputExistsError):
        create_cube(tmp_path / "o.mat", cube, data.shape)
    sink = create_cube(tmp_path / "o.mat", cube, data.shape, force=True, dtype="uint16")
    sink.write_window(0, 0, np.clip(data[:, :8, :8], 0, 100))
    sink.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mat"]


def test_small_mat_outputs_stay_v5_and_v73_writes_matlab_class(tmp_path):
    import scipy.io as sio

    from hsirestore.io.matfile import MatV73Sink

    cube = make_cube(bands=3, rows=6, cols=7)
    sink = create_cube(tmp_path / "s.mat", cube, cube.shape)
    assert not isinstance(sink, MatV73Sink)
    sink.write_window(0, 0, cube.data)
    sink.commit()
    assert sio.loadmat(tmp_path / "s.mat")["cube"].shape == (6, 7, 3)  # v5: scipy reads it
    cube.attrs["mat_version"] = "7.3"
    write_cube(cube, tmp_path / "w.mat")
    with h5py.File(tmp_path / "w.mat", "r") as f:
        assert f["cube"].attrs["MATLAB_class"] == b"single"
        assert "".join(map(chr, f["hsirestore_layout"][:, 0])) == "bands-last"
    np.testing.assert_allclose(read_cube(tmp_path / "w.mat").data, cube.data)
