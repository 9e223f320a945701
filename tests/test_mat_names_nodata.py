""".mat outputs keep the nodata value (as a scalar ``nodata`` variable the readers take back)
and the name of the variable they were read from; simulate-cassi / demo name their
measurement ``meas`` and mask ``mask``; ``simulate-cassi --save-reference`` writes the cube a
measurement was simulated from (audit items M8, M9)."""
import json

import h5py
import numpy as np
import pytest
import scipy.io as sio
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.errors import OptionError
from hsirestore.io import Cube, create_cube, open_cube, read_cube, write_cube
from hsirestore.io.matfile import is_matlab_name, list_variables, output_variable

runner = CliRunner()


def _cube(nodata=-1.0, bands=4, rows=9, cols=11, **kw):
    x = np.random.default_rng(0).random((bands, rows, cols), dtype=np.float32) + 0.1
    x[:, 2, 3] = np.nan  # invalid: NaN
    valid = np.ones((rows, cols), bool)
    valid[6, 7] = False  # invalid: the mask
    return Cube(x, valid=valid, nodata=nodata, wavelengths=np.linspace(400, 700, bands), **kw)


def _v73(cube: Cube) -> Cube:
    cube.attrs["mat_version"] = "7.3"
    return cube


def _check_back(path, nodata):
    back = read_cube(path)
    assert back.nodata == nodata
    assert back.valid is not None and not back.valid[2, 3] and not back.valid[6, 7]
    assert back.valid.sum() == back.rows * back.cols - 2
    src = open_cube(path)  # windowed (v7.3) or whole (v5): same nodata
    try:
        assert src.meta.nodata == nodata
        win = src.read_window(0, src.shape[1], 0, src.shape[2])
        assert (win[:, 2, 3] == nodata).all() or np.isnan(win[:, 2, 3]).all()
    finally:
        src.close()
    return back


# ------------------------------------------------------------------ nodata
@pytest.mark.parametrize("v73", [False, True])
def test_float_mat_output_writes_and_stores_nodata(tmp_path, v73):
    cube = _cube(-1.0)
    write_cube(_v73(cube) if v73 else cube, tmp_path / "o.mat")
    if v73:
        with h5py.File(tmp_path / "o.mat", "r") as f:
            m = f["cube"][...].T  # MATLAB (rows, cols, bands)
            assert f["nodata"][...].size == 1 and float(f["nodata"][...].ravel()[0]) == -1.0
            assert f["nodata"].attrs["MATLAB_class"] == b"double"
    else:
        raw = sio.loadmat(tmp_path / "o.mat")
        m = raw["cube"]
        assert raw["nodata"].shape == (1, 1) and raw["nodata"][0, 0] == -1.0
    assert m.dtype == np.float32
    assert (m[2, 3] == -1).all() and (m[6, 7] == -1).all()
    assert np.isfinite(m).all()  # no NaN left: every invalid pixel is the nodata value
    back = _check_back(tmp_path / "o.mat", -1.0)
    ok = back.valid
    np.testing.assert_array_equal(back.data[:, ok], cube.data[:, ok])
    assert list_variables(tmp_path / "o.mat")["nodata"] == (1, 1)


@pytest.mark.parametrize("v73", [False, True])
def test_without_nodata_float_outputs_keep_nan(tmp_path, v73):
    cube = _cube(None)
    write_cube(_v73(cube) if v73 else cube, tmp_path / "o.mat")
    assert "nodata" not in list_variables(tmp_path / "o.mat")
    back = read_cube(tmp_path / "o.mat")
    assert back.nodata is None and back.valid.sum() == back.rows * back.cols - 2
    m = sio.loadmat(tmp_path / "o.mat")["cube"] if not v73 else None
    if m is not None:
        assert np.isnan(m[2, 3]).all() and np.isnan(m[6, 7]).all()


def test_integer_mat_output_stores_nodata_and_nan_nodata_is_not_stored(tmp_path):
    cube = _cube(-9999.0).with_data(_cube().data * 1000)
    write_cube(cube, tmp_path / "i.mat", dtype="int16")
    raw = sio.loadmat(tmp_path / "i.mat")
    assert raw["cube"].dtype == np.int16 and (raw["cube"][2, 3] == -9999).all()
    assert raw["nodata"][0, 0] == -9999
    assert read_cube(tmp_path / "i.mat").nodata == -9999
    # a NaN nodata cannot be held by integers: those pixels are 0 and no nodata is stored
    nan = _cube(float("nan"))
    write_cube(nan, tmp_path / "n.mat", dtype="uint16")
    assert "nodata" not in list_variables(tmp_path / "n.mat")
    write_cube(nan, tmp_path / "nf.mat")
    assert np.isnan(sio.loadmat(tmp_path / "nf.mat")["nodata"][0, 0])


def test_streamed_v73_sink_writes_and_stores_nodata(tmp_path):
    cube = _v73(_cube(-1.0))
    data = cube.data.copy()
    data[:, ~cube.valid] = np.nan  # what the predictors hand to sinks
    sink = create_cube(tmp_path / "s.mat", cube, cube.shape)
    for r0 in (0, 5):
        sink.write_window(r0, 0, data[:, r0:r0 + 5])
    sink.commit()
    with h5py.File(tmp_path / "s.mat", "r") as f:
        m = f["cube"][...].T
        assert float(f["nodata"][...].ravel()[0]) == -1.0
    assert (m[2, 3] == -1).all() and (m[6, 7] == -1).all() and np.isfinite(m).all()
    _check_back(tmp_path / "s.mat", -1.0)


@pytest.mark.parametrize("v73", [False, True])
def test_scalar_nodata_variable_is_read_not_picked(tmp_path, v73):
    """A file holding a 2-D array (a measurement) and a scalar `nodata`: the array is the cube,
    `nodata` its nodata value, whole and windowed."""
    y = np.random.default_rng(1).random((6, 8)).astype(np.float32) + 1
    y[1, 2] = 7.0
    if v73:
        with h5py.File(tmp_path / "y.mat", "w") as f:
            f["y"] = y.T
            f["nodata"] = np.array([[7.0]])
    else:
        sio.savemat(tmp_path / "y.mat", {"y": y, "nodata": 7.0})
    back = read_cube(tmp_path / "y.mat")
    assert back.shape == (1, 6, 8) and back.attrs["variable"] == "y" and back.nodata == 7.0
    assert not back.valid[1, 2] and back.valid.sum() == 47
    src = open_cube(tmp_path / "y.mat")
    try:
        assert src.meta.nodata == 7.0
    finally:
        src.close()
    # a non-scalar `nodata` is no nodata value
    sio.savemat(tmp_path / "v.mat", {"cube": np.ones((5, 6, 3), np.float32), "nodata": np.ones(4)})
    assert read_cube(tmp_path / "v.mat").nodata is None


# ------------------------------------------------------------------ variable names
def test_output_variable_rule():
    assert output_variable({}) == "cube"
    assert output_variable({"variable": "rad"}) == "rad"
    for bad in ("grp/rad", "2x", "end", "_x", "a" * 64, "wavelength", "nodata", "hsirestore_layout", 3):
        assert output_variable({"variable": bad}) == "cube", bad
    assert output_variable({"variable": "rad"}, "meas") == "meas"
    assert is_matlab_name("a" * 63) and not is_matlab_name("a b")
    with pytest.raises(OptionError):
        output_variable({}, "not a name")
    with pytest.raises(OptionError):
        output_variable({}, "wavelength")


@pytest.mark.parametrize("v73", [False, True])
def test_transformed_input_keeps_its_variable_name(tmp_path, v73):
    x = np.random.default_rng(2).random((10, 12, 5)).astype(np.float32)
    if v73:
        with h5py.File(tmp_path / "in.mat", "w") as f:
            f["rad"] = x.T
    else:
        sio.savemat(tmp_path / "in.mat", {"rad": x})
    cube = read_cube(tmp_path / "in.mat")
    assert cube.attrs["variable"] == "rad"
    write_cube(cube.with_data(cube.data * 2), tmp_path / "out.mat")
    assert set(list_variables(tmp_path / "out.mat")) >= {"rad", "hsirestore_layout"}
    assert "cube" not in list_variables(tmp_path / "out.mat")
    # streamed (v7.3 sink, or the buffered one for v5) names it the same way
    src = open_cube(tmp_path / "in.mat")
    try:
        sink = create_cube(tmp_path / "st.mat", src.meta, src.shape)
        sink.write_window(0, 0, src.read_window(0, 10, 0, 12))
        sink.commit()
    finally:
        src.close()
    assert "rad" in list_variables(tmp_path / "st.mat")
    # an explicit name wins; a new cube without a source variable is "cube"
    write_cube(cube, tmp_path / "named.mat", var="scene")
    assert "scene" in list_variables(tmp_path / "named.mat")
    write_cube(Cube(cube.data), tmp_path / "new.mat")
    assert "cube" in list_variables(tmp_path / "new.mat")
    with pytest.raises(OptionError):
        create_cube(tmp_path / "bad.mat", cube, cube.shape, var="1bad")
    assert not (tmp_path / "bad.mat").exists()


def test_degrade_keeps_variable_and_nodata(tmp_path):
    x = np.random.default_rng(3).random((12, 14, 6)).astype(np.float32) + 0.1
    x[4, 5, :] = -1.0  # a nodata pixel
    sio.savemat(tmp_path / "v5.mat", {"rad": x, "nodata": -1.0})
    r = runner.invoke(app, ["degrade", str(tmp_path / "v5.mat"), str(tmp_path / "d.mat"), "-d",
                            "noise:sigma=5", "--seed", "1"])
    assert r.exit_code == 0, r.output
    out = sio.loadmat(tmp_path / "d.mat")
    assert "rad" in out and "cube" not in out and out["nodata"][0, 0] == -1
    assert (out["rad"][4, 5] == -1).all()
    back = read_cube(tmp_path / "d.mat")
    assert back.nodata == -1 and not back.valid[4, 5] and back.valid.sum() == 12 * 14 - 1


# ------------------------------------------------------------------ simulate-cassi / demo
@pytest.fixture
def scene(tmp_path):
    rows = cols = 20
    yy, xx = np.mgrid[0:rows, 0:cols] / 20.0
    x = np.stack([0.3 + 0.2 * np.sin(3 * xx + k / 5) * np.cos(2 * yy) for k in range(31)]).astype(np.float32)
    write_cube(Cube(x, wavelengths=np.arange(400, 701, 10.0), wavelength_units="nm"), tmp_path / "scene.h5")
    mask = (np.random.default_rng(0).random((16, 16)) > 0.5).astype(np.float32)
    sio.savemat(tmp_path / "mask.mat", {"mask": mask})
    return tmp_path


def _sim(d, *extra):
    return runner.invoke(app, ["simulate-cassi", str(d / "scene.h5"), "--mask", str(d / "mask.mat"),
                               "--to-28", "--crop", "16", "-o", str(d / "meas.mat"), *map(str, extra)])


def test_simulate_cassi_names_meas_and_saves_the_reference(scene):
    r = _sim(scene, "--save-reference", scene / "ref28.mat")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["reference"] == str(scene / "ref28.mat") and res["bands"] == 28
    assert set(k for k in sio.loadmat(scene / "meas.mat") if not k.startswith("__")) == {"meas"}
    ref = read_cube(scene / "ref28.mat")
    assert ref.shape == (28, 16, 16) and ref.wavelength_units == "nm"
    assert ref.wavelengths[0] == pytest.approx(453.3) and ref.wavelengths[-1] == pytest.approx(648.1)
    r = runner.invoke(app, ["cassi", str(scene / "meas.mat"), "--mask", str(scene / "mask.mat"),
                            "--method", "gap-tv", "--iterations", "5", "-o", str(scene / "dec.h5"),
                            "--reference", str(scene / "ref28.mat")])
    assert r.exit_code == 0, r.output
    assert "mpsnr" in json.loads(r.stdout.strip().splitlines()[-1])
    # without --to-28 the reference keeps the cube's own bands and wavelengths
    r = runner.invoke(app, ["simulate-cassi", str(scene / "scene.h5"), "--mask", str(scene / "mask.mat"),
                            "--crop", "16", "-o", str(scene / "m31.h5"), "--save-reference",
                            str(scene / "ref31.h5")])
    assert r.exit_code == 0, r.output
    ref31 = read_cube(scene / "ref31.h5")
    assert ref31.shape == (31, 16, 16) and ref31.wavelengths[0] == 400
    np.testing.assert_allclose(ref31.data, read_cube(scene / "scene.h5").data[:, 2:18, 2:18])


def _usage(r, text):
    assert r.exit_code == 2, r.output
    assert text in r.stderr


def test_simulate_cassi_save_reference_refusals(scene):
    # the input cube, the mask, the measurement itself: refused, nothing written
    _usage(_sim(scene, "--save-reference", scene / "scene.h5", "--force"), "would overwrite the input")
    _usage(_sim(scene, "--save-reference", scene / "mask.mat", "--force"), "would overwrite the input")
    _usage(_sim(scene, "--save-reference", scene / "meas.mat"), "same file")
    _usage(_sim(scene, "--save-reference", scene / "ref.png"), "--save-reference")
    assert not (scene / "meas.mat").exists()
    # an existing reference is not overwritten without --force (and the measurement not written)
    (scene / "ref.h5").write_bytes(b"keep")
    r = _sim(scene, "--save-reference", scene / "ref.h5")
    assert r.exit_code == 1 and "--force" in r.stderr
    assert (scene / "ref.h5").read_bytes() == b"keep" and not (scene / "meas.mat").exists()
    r = _sim(scene, "--save-reference", scene / "ref.h5", "--force")
    assert r.exit_code == 0, r.output
    assert read_cube(scene / "ref.h5").bands == 28


def test_demo_names_meas_and_mask(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", str(out), "--method", "gap-tv", "--size", "16"])
    assert r.exit_code == 0, r.output
    assert sio.loadmat(out / "mask.mat")["mask"].shape == (16, 16)
    assert sio.loadmat(out / "measurement.mat")["meas"].shape == (16, 16 + 54)
    assert "cube" not in sio.loadmat(out / "mask.mat")
