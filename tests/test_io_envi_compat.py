"""ENVI files as other tools write them: file names, map info georeferencing, carried keys."""
import math

import numpy as np
import pytest

from hsirestore.errors import FormatError
from hsirestore.io import Cube, create_cube, open_cube, read_cube, write_cube
from hsirestore.io.envi import envi_paths

rasterio = pytest.importorskip("rasterio")

UTM_CSS = ('PROJCS["WGS_1984_UTM_Zone_33N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",'
           'SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],'
           'UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
           'PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],'
           'PARAMETER["Central_Meridian",15.0],PARAMETER["Scale_Factor",0.9996],'
           'PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]')
UTM_INFO = "{ UTM, 1.000, 1.000, 500000.000, 4200000.000, 2.0, 2.0, 33, North, WGS-84, units=Meters }"


def _arr(bands=3, rows=4, cols=5):
    return (np.arange(bands * rows * cols, dtype=np.float32).reshape(bands, rows, cols) + 1) / 7


def _envi(folder, hdr_name, data_name, arr=None, extra="", tail=b""):
    """Write a float32 BSQ ENVI file under the given names; returns (header, data)."""
    arr = _arr() if arr is None else arr
    b, r, c = arr.shape
    (folder / data_name).write_bytes(arr.astype("<f4").tobytes() + tail)
    (folder / hdr_name).write_text(
        f"ENVI\nsamples = {c}\nlines = {r}\nbands = {b}\nheader offset = 0\n"
        "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 0\n" + extra)
    return folder / hdr_name, folder / data_name


def _epsg(crs):
    """EPSG code of a rasterio CRS; GDAL names WGS 84 in lon/lat order OGC:CRS84."""
    return 4326 if crs.to_authority() == ("OGC", "CRS84") else crs.to_epsg()


def _header(path):
    """Header keys (lower case) -> value text of a written ENVI header."""
    out = {}
    for line in path.read_text().splitlines()[1:]:
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


# ---- 1. file names

@pytest.mark.parametrize("hdr,dat", [("X.HDR", "X.IMG"), ("X.Hdr", "X.Img"), ("x.HDR", "x.img"),
                                     ("x.hdr", "x.DAT")])
def test_letter_case_of_suffixes(tmp_path, hdr, dat):
    h, d = _envi(tmp_path, hdr, dat)
    for given in (h, d):
        np.testing.assert_array_equal(read_cube(given).data, _arr())
        src = open_cube(given)
        np.testing.assert_array_equal(src.read_window(1, 3, 0, 2), _arr()[:, 1:3, 0:2])
        src.close()


@pytest.mark.parametrize("suffix", [".bin", ".dat", ".raw", ".bsq", ".bil", ".bip", ""])
def test_data_suffixes_and_gdal_output(tmp_path, suffix):
    h, d = _envi(tmp_path, "g.hdr", "g" + suffix)
    np.testing.assert_array_equal(read_cube(h).data, _arr())
    np.testing.assert_array_equal(read_cube(d).data, _arr())


def test_gdal_envi_driver_output(tmp_path):
    """GDAL writes x.bin + x.hdr; either name reads, CRS and transform included."""
    from rasterio.transform import Affine

    arr = _arr()
    with rasterio.open(tmp_path / "gd.bin", "w", driver="ENVI", width=5, height=4, count=3,
                       dtype="float32", crs="EPSG:32633",
                       transform=Affine(2, 0, 500000, 0, -2, 4200000)) as ds:
        ds.write(arr)
    for given in ("gd.bin", "gd.hdr"):
        cube = read_cube(tmp_path / given)
        np.testing.assert_array_equal(cube.data, arr)
        assert cube.transform == (2, 0, 500000, 0, -2, 4200000)
        assert "UTM_Zone_33N" in cube.crs


def test_the_named_data_file_is_read(tmp_path):
    """With x.hdr, x.img and x.bin side by side, the data file the user names is the one read."""
    h, _ = _envi(tmp_path, "x.hdr", "x.img")
    (tmp_path / "x.bin").write_bytes((2 * _arr()).astype("<f4").tobytes())
    np.testing.assert_array_equal(read_cube(h).data, _arr())
    np.testing.assert_array_equal(read_cube(tmp_path / "x.img").data, _arr())
    np.testing.assert_array_equal(read_cube(tmp_path / "x.bin").data, 2 * _arr())


def test_data_name_with_header_appended(tmp_path):
    h, d = _envi(tmp_path, "s.img.hdr", "s.img")
    np.testing.assert_array_equal(read_cube(d).data, _arr())
    np.testing.assert_array_equal(read_cube(h).data, _arr())


def test_trailing_bytes_are_ignored_short_file_is_an_error(tmp_path):
    h, d = _envi(tmp_path, "t.hdr", "t.img", tail=b"\x07" * 16)
    np.testing.assert_array_equal(read_cube(h).data, _arr())
    src = open_cube(h)
    np.testing.assert_array_equal(src.read_window(0, 4, 0, 5), _arr())
    src.close()
    d.write_bytes(d.read_bytes()[:-20])
    with pytest.raises(FormatError, match="truncated"):
        read_cube(h)


def test_output_names():
    from pathlib import Path

    assert envi_paths(Path("o/X.HDR")) == (Path("o/X.HDR"), Path("o/X.IMG"))
    assert envi_paths(Path("o/x.hdr")) == (Path("o/x.hdr"), Path("o/x.img"))
    assert envi_paths(Path("o/x.img.hdr")) == (Path("o/x.img.hdr"), Path("o/x.img"))
    assert envi_paths(Path("o/x.bin")) == (Path("o/x.hdr"), Path("o/x.bin"))
    assert envi_paths(Path("o/X.IMG")) == (Path("o/X.HDR"), Path("o/X.IMG"))


# ---- 2. georeferencing

@pytest.mark.parametrize("info,epsg", [
    (UTM_INFO, 32633),
    ("{ UTM, 1, 1, 500000, 8000000, 2, 2, 33, South, WGS-84 }", 32733),
    ("{ UTM, 1, 1, 500000, 4200000, 2, 2, 10, North, North America 1983, units=Meters }", 26910),
    ("{ Geographic Lat/Lon, 1, 1, 15, 45, 0.0001, 0.0001, WGS-84, units=Degrees }", 4326),
])
def test_crs_from_map_info_alone(tmp_path, info, epsg):
    h, _ = _envi(tmp_path, "m.hdr", "m.img", extra=f"map info = {info}\n")
    cube = read_cube(h)
    assert cube.crs == f"EPSG:{epsg}"
    with rasterio.open(tmp_path / "m.img") as ds:  # GDAL agrees on both
        assert _epsg(ds.crs) == epsg
        np.testing.assert_allclose(cube.transform, tuple(ds.transform)[:6])
    write_cube(cube, tmp_path / "o.hdr")
    back = read_cube(tmp_path / "o.hdr")
    np.testing.assert_allclose(back.transform, cube.transform)
    with rasterio.open(tmp_path / "o.img") as ds:
        assert _epsg(ds.crs) == epsg
    head = _header(tmp_path / "o.hdr")
    assert "Arbitrary" not in head["map info"] and head["coordinate system string"].startswith("{")


def test_unknown_datum_keeps_the_projection_fields(tmp_path):
    h, _ = _envi(tmp_path, "m.hdr", "m.img",
                 extra="map info = { UTM, 1, 1, 500000, 4200000, 2, 2, 33, North, Made-Up 1900, "
                       "units=Meters }\n")
    cube = read_cube(h)
    assert cube.crs is None and cube.transform == (2, 0, 500000, 0, -2, 4200000)
    write_cube(cube, tmp_path / "o.hdr")
    info = _header(tmp_path / "o.hdr")["map info"]
    assert info.replace(" ", "") == "{UTM,1,1,500000,4200000,2,2,33,North,Made-Up1900,units=Meters}"


def test_degree_grids_are_written_in_degrees(tmp_path):
    cube = Cube(_arr(), crs="EPSG:4326", transform=(0.001, 0, 15, 0, -0.001, 45))
    write_cube(cube, tmp_path / "g.hdr")
    info = _header(tmp_path / "g.hdr")["map info"]
    assert info.startswith("{ Geographic Lat/Lon") and "units=Degrees" in info and "Meters" not in info
    with rasterio.open(tmp_path / "g.img") as ds:
        assert _epsg(ds.crs) == 4326
        np.testing.assert_allclose(tuple(ds.transform)[:6], cube.transform)
    # a geographic coordinate system string, as ENVI writes it
    css = ('GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
           'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]')
    h, _ = _envi(tmp_path, "c.hdr", "c.img", extra=(
        "map info = { Geographic Lat/Lon, 1, 1, 15, 45, 0.0001, 0.0001, WGS-84, units=Degrees }\n"
        f"coordinate system string = {{{css}}}\n"))
    write_cube(read_cube(h), tmp_path / "c2.hdr")
    assert "units=Degrees" in _header(tmp_path / "c2.hdr")["map info"]


@pytest.mark.parametrize("rot,dx,dy", [(30.0, 2.0, 2.0), (-45.0, 2.0, 3.0), (75.0, 1.1, 1.1),
                                       (90.0, 2.0, 2.0)])
def test_rotated_map_info_reads_as_gdal_and_is_written_back(tmp_path, rot, dx, dy):
    info = f"{{ UTM, 1, 1, 500000, 4200000, {dx}, {dy}, 33, North, WGS-84, units=Meters, rotation={rot} }}"
    h, _ = _envi(tmp_path, "r.hdr", "r.img",
                 extra=f"map info = {info}\ncoordinate system string = {{{UTM_CSS}}}\n")
    cube = read_cube(h)
    with rasterio.open(tmp_path / "r.img") as ds:
        np.testing.assert_allclose(cube.transform, tuple(ds.transform)[:6], atol=1e-9)
    t = math.radians(rot)  # counter-clockwise: column axis turns from east towards north
    np.testing.assert_allclose(cube.transform[:2], (dx * math.cos(t), dx * math.sin(t)), atol=1e-12)
    write_cube(cube, tmp_path / "o.hdr")
    assert f"rotation={rot:g}" in _header(tmp_path / "o.hdr")["map info"].replace(" ", "")
    np.testing.assert_allclose(read_cube(tmp_path / "o.hdr").transform, cube.transform, atol=1e-9)
    with rasterio.open(tmp_path / "o.img") as ds:
        np.testing.assert_allclose(tuple(ds.transform)[:6], cube.transform, atol=1e-9)
        assert ds.crs.to_epsg() == 32633


def test_rotated_reference_pixel_maps_to_its_coordinates(tmp_path):
    h, _ = _envi(tmp_path, "r.hdr", "r.img", extra=(
        "map info = { UTM, 3.5, 2.5, 500000, 4200000, 2, 2, 33, North, WGS-84, rotation=30 }\n"))
    a, b, c, d, e, f = read_cube(h).transform
    x, y = 2.5, 1.5  # 0-based pixel coordinates of ENVI's 1-based reference pixel (3.5, 2.5)
    np.testing.assert_allclose((a * x + b * y + c, d * x + e * y + f), (500000, 4200000))


def test_rotated_geotiff_to_envi(tmp_path):
    from rasterio.transform import Affine

    t = Affine.translation(500000, 4200000) @ Affine.rotation(-20) @ Affine.scale(2, -2)
    write_cube(Cube(_arr(), crs="EPSG:32633", transform=tuple(t)[:6]), tmp_path / "r.tif")
    cube = read_cube(tmp_path / "r.tif")
    write_cube(cube, tmp_path / "r.hdr")
    assert "rotation=-20" in _header(tmp_path / "r.hdr")["map info"].replace(" ", "")
    np.testing.assert_allclose(read_cube(tmp_path / "r.hdr").transform, tuple(t)[:6], atol=1e-9)
    with rasterio.open(tmp_path / "r.img") as ds:
        np.testing.assert_allclose(tuple(ds.transform)[:6], tuple(t)[:6], atol=1e-9)
        assert ds.crs.to_epsg() == 32633
    # streamed output too
    sink = create_cube(tmp_path / "s.hdr", cube, cube.shape)
    sink.write_window(0, 0, cube.data)
    sink.commit()
    np.testing.assert_allclose(read_cube(tmp_path / "s.hdr").transform, tuple(t)[:6], atol=1e-9)


def test_transforms_envi_cannot_hold(tmp_path):
    # rows going north: rotation=180, as GDAL writes and reads it
    write_cube(Cube(_arr(), transform=(2, 0, 10, 0, 2, 20)), tmp_path / "n.hdr")
    assert "rotation=180" in _header(tmp_path / "n.hdr")["map info"].replace(" ", "")
    assert read_cube(tmp_path / "n.hdr").transform == (2, 0, 10, 0, 2, 20)
    with rasterio.open(tmp_path / "n.img") as ds:
        assert tuple(ds.transform)[:6] == (2, 0, 10, 0, 2, 20)
    # shear: no map info rather than a wrong one
    write_cube(Cube(_arr(), transform=(2, 0.5, 10, 0, -2, 20)), tmp_path / "s.hdr")
    assert "map info" not in _header(tmp_path / "s.hdr")


# ---- 3. header keys carried to outputs

CARRIED = ("reflectance scale factor = 10000\n"
           "bbl = { 1, 0, 1 }\n"
           "data gain values = { 0.5, 0.5, 0.25 }\n"
           "data offset values = { 1, 2, 3 }\n"
           "sensor type = AVIRIS-NG\n"
           "acquisition time = 2021-06-01T10:11:12.5Z\n")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_carried_keys_round_trip_without_being_applied(tmp_path):
    h, _ = _envi(tmp_path, "k.hdr", "k.img", extra=CARRIED)
    cube = read_cube(h)
    np.testing.assert_array_equal(cube.data, _arr())  # gain/offset are kept, not applied
    env = cube.attrs["envi_header"]
    assert [int(v) for v in env["bbl"]] == [1, 0, 1] and env["reflectance scale factor"] == "10000"
    for out in ("o.hdr", "s.hdr"):
        if out == "o.hdr":
            write_cube(cube, tmp_path / out)
        else:
            src = open_cube(h)
            sink = create_cube(tmp_path / out, src.meta, src.shape)
            sink.write_window(0, 0, src.read_window(0, 4, 0, 5))
            sink.commit()
            src.close()
        head = _header(tmp_path / out)
        assert head["bbl"].replace(" ", "") == "{1,0,1}"
        assert head["data gain values"].replace(" ", "") == "{0.5,0.5,0.25}"
        assert head["data offset values"].replace(" ", "") == "{1,2,3}"
        assert head["reflectance scale factor"] == "10000"
        assert head["sensor type"] == "AVIRIS-NG"
        assert head["acquisition time"] == "2021-06-01T10:11:12.5Z"
        back = read_cube(tmp_path / out)
        np.testing.assert_array_equal(back.data, _arr())  # not applied twice either
        assert back.attrs["envi_header"]["bbl"] == env["bbl"]
    with rasterio.open(tmp_path / "o.img") as ds:  # GDAL sees the same scale/offset
        assert ds.scales == (0.5, 0.5, 0.25) and ds.offsets == (1, 2, 3)


def test_carried_keys_dropped_when_the_band_count_changes(tmp_path):
    h, _ = _envi(tmp_path, "k.hdr", "k.img", extra=CARRIED)
    cube = read_cube(h)
    two = cube.with_data(cube.data[:2], wavelengths=None, fwhm=None, band_names=None)
    write_cube(two, tmp_path / "two.hdr")
    head = _header(tmp_path / "two.hdr")
    for key in ("bbl", "data gain values", "reflectance scale factor", "sensor type", "acquisition time"):
        assert key not in head


def test_per_band_key_of_the_wrong_length_is_not_kept(tmp_path):
    h, _ = _envi(tmp_path, "k.hdr", "k.img", extra="bbl = { 1, 0 }\nsensor type = X\n")
    env = read_cube(h).attrs["envi_header"]
    assert "bbl" not in env and env["sensor type"] == "X"


def test_header_named_after_its_data_file_wins(tmp_path):
    """s.img.hdr describes s.img, even with an s.img.img beside it; given s.img, the header
    s.img.hdr is preferred to s.hdr."""
    h, d = _envi(tmp_path, "s.img.hdr", "s.img")
    (tmp_path / "s.img.img").write_bytes((3 * _arr()).astype("<f4").tobytes())
    (tmp_path / "s.hdr").write_text(h.read_text().replace("bands = 3", "bands = 1"))
    np.testing.assert_array_equal(read_cube(h).data, _arr())
    np.testing.assert_array_equal(read_cube(d).data, _arr())
