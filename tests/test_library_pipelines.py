"""The pipelines behind the commands are library functions (degrade_cube, restore_file,
describe_cube, simulate_measurement, CassiDecoder.decode_cube, cube_files, output_dtype),
and the options denoise/cassi share are spelled alike (--ensemble, --threads, --format)."""
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.errors import FormatError, InvalidValueError, OptionError, ShapeError
from hsirestore.io import Cube, read_cube, write_cube

B = 8


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _last(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def _counts(tmp_path):
    """A uint16 ENVI cube with one nodata pixel (the writer moves the single 65535 value of a
    valid pixel to 65534)."""
    rng = np.random.default_rng(0)
    x = (rng.random((B, 20, 18)) * 3000).round().astype(np.float32)
    x[:, 2, 3] = 65535
    x[4, 10, 10] = 65535
    write_cube(Cube(x, wavelengths=np.linspace(450, 650, B), nodata=65535.0,
                    source_dtype="uint16"), tmp_path / "u16.hdr", dtype="uint16")
    return tmp_path / "u16.hdr"


# ------------------------------------------------------------------ degrade
def test_degrade_cube_reproduces_the_command(tmp_path):
    from hsirestore.inference.degrade import degrade_cube

    src = _counts(tmp_path)
    r = _run("degrade", src, tmp_path / "d.hdr", "-d", "blur+noise:sigma=20", "--seed", 3)
    assert r.exit_code == 0, r.output
    line = _last(r)
    out, record = degrade_cube(read_cube(src), "blur+noise:sigma=20", seed=3)
    assert record == {k: v for k, v in line.items() if k not in ("output", "files", "dtype")}
    assert line["dtype"] == "uint16"
    assert np.array_equal(out.data, np.rint(out.data))  # integer counts stay integers
    written = read_cube(tmp_path / "d.hdr")
    np.testing.assert_array_equal(written.data, out.data)
    assert json.loads(out.attrs["degradation"]) == record
    assert (out.data[:, 2, 3] == 65535).all()  # the nodata pixel stays nodata


def test_degrade_cube_errors_and_no_torch(tmp_path):
    from hsirestore.inference.degrade import degrade_cube

    empty = Cube(np.zeros((3, 4, 4), np.float32), valid=np.zeros((4, 4), bool))
    with pytest.raises(InvalidValueError, match="scene: no valid pixel"):
        degrade_cube(empty, "noise", name="scene")
    code = ("import sys, numpy as np; from hsirestore.io import Cube; "
            "from hsirestore.inference.degrade import degrade_cube; "
            "degrade_cube(Cube(np.random.rand(3, 8, 8).astype(np.float32)), 'blur+noise'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ output dtype
def test_output_dtype_for_cube_and_source(tmp_path):
    from hsirestore.io import counts_dtype, open_cube, output_dtype, output_dtype_for

    src = _counts(tmp_path)
    cube = read_cube(src)
    assert output_dtype_for(cube, tmp_path / "o.h5") == "uint16"
    s = open_cube(src)
    try:
        assert output_dtype_for(s, tmp_path / "o.tif") == "uint16"
    finally:
        s.close()
    assert counts_dtype(cube, cube.data / 7) is None  # fractional values: float32
    assert output_dtype(Cube(np.ones((2, 3, 3))), np.ones((2, 3, 3)), "o.h5") is None


# ------------------------------------------------------------------ folder listings
def test_cube_files_by_kind(tmp_path):
    from hsirestore.io import IMAGE_KINDS, cube_files, cube_suffixes

    for name in ("a.hdr", "a.img", "b.h5", "c.hdf", "d.mat", "e.tif", "f.png", "g.jpg",
                 ".hidden.h5", "notes.txt", "x_restored.h5"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.h5").mkdir()
    assert ".hdr" in cube_suffixes() and ".img" not in cube_suffixes()
    names = [p.name for p in cube_files(tmp_path, skip=lambda f: f.stem.endswith("_restored"))]
    assert names == ["a.hdr", "b.h5", "c.hdf", "d.mat", "e.tif"]
    assert [p.name for p in cube_files(tmp_path, IMAGE_KINDS)] == ["e.tif", "f.png", "g.jpg"]
    with pytest.raises(OptionError, match="unknown file kind"):
        cube_files(tmp_path, ("pdf",))


# ------------------------------------------------------------------ info
def test_describe_cube_hdf5_dataset_and_rules(tmp_path):
    from hsirestore.io import describe_cube

    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    x[:, 0, 0] = -1  # an invalid pixel
    x[1, 2, 2] = -1  # a single missing value
    write_cube(Cube(x, nodata=-1.0), tmp_path / "c.h5")
    d = describe_cube(f"{tmp_path / 'c.h5'}:/cube")
    assert d["format"] == "hdf5" and d["invalid_pixels"] == 1 and d["missing_values"] == 1
    assert d["values"]["min"] == 1 and d["values"]["max"] == 39
    with pytest.raises(FormatError, match="file not found"):
        describe_cube(f"{tmp_path / 'missing.h5'}:/cube")
    code = (f"import sys; from hsirestore.io import describe_cube; "
            f"describe_cube({str(tmp_path / 'c.h5')!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ denoise
def test_restore_file_in_memory_and_streamed(tmp_path):
    from hsirestore.inference.restore import Restorer, restore_file

    src = _counts(tmp_path)
    r = Restorer(net=lambda t, types: t, device="cpu", tile=16, overlap=4)
    a = restore_file(r, src, tmp_path / "a.h5", "noise")
    b = restore_file(r, src, tmp_path / "b.h5", "noise", stream=True)
    assert a["shape"] == b["shape"] == (B, 20, 18)
    assert a["dtype"] == b["dtype"] == "uint16" and a["info"]["degradation"] == "noise"
    assert a["files"] == [tmp_path / "a.h5"]
    np.testing.assert_array_equal(read_cube(tmp_path / "a.h5").data, read_cube(tmp_path / "b.h5").data)
    with pytest.raises(OptionError, match="would overwrite the input"):
        restore_file(r, src, src, "noise", force=True)


def test_denoise_format_names_folder_outputs(tmp_path, hsivar_tiny_weights):
    src = _counts(tmp_path)
    base = ("denoise", src, "-d", "noise", "--model", "hsivar-tiny", "--weights",
            hsivar_tiny_weights, "--tile", 16, "--overlap", 4)
    r = _run(*base, "-o", tmp_path / "out", "--format", "tif")
    assert r.exit_code == 0, r.output
    assert _last(r)["output"] == str(tmp_path / "out" / "u16_restored.tif")
    assert read_cube(tmp_path / "out" / "u16_restored.tif").shape == (B, 20, 18)
    r = _run(*base, "-o", tmp_path / "out2", "--format", "png")
    assert r.exit_code == 2 and "--format" in r.stderr
    assert "--format" in _run("denoise", "--help").stdout


# ------------------------------------------------------------------ CASSI


def test_simulate_measurement_reproduces_the_command(cassi_files):
    from hsirestore.physics.cassi import cassi_forward, simulate_measurement

    d = cassi_files
    r = _run("simulate-cassi", d / "truth.h5", "--mask", d / "mask.mat", "-o", d / "sim.mat",
             "--shot-noise", 500, "--seed", 4)
    assert r.exit_code == 0, r.output
    cube, mask = read_cube(d / "truth.h5"), read_cube(d / "mask.mat")
    meas, ref = simulate_measurement(cube, mask, 2, shot_noise=500, seed=4)
    np.testing.assert_array_equal(meas.data, read_cube(d / "sim.mat").data)
    assert _last(r)["shape"] == list(meas.shape[1:]) and meas.attrs == {"bands": B, "step": 2}
    crop, ref = simulate_measurement(cube, mask.data[0][4:12, 8:16], crop=8)
    np.testing.assert_array_equal(crop.data[0], cassi_forward(cube.data[:, 4:12, 8:16],
                                                              mask.data[0][4:12, 8:16], 2))
    assert ref.shape == (B, 8, 8) and ref.attrs == {"crop": 8}
    with pytest.raises(ShapeError, match="does not match"):
        simulate_measurement(cube, np.ones((3, 3)))
    with pytest.raises(OptionError, match="--step"):
        simulate_measurement(cube, mask, 0)


def test_decode_cube_returns_a_cube_with_wavelengths(cassi_files):
    from hsirestore.inference.cassi import CassiDecoder

    d = cassi_files
    dec = CassiDecoder(method="gap-tv", bands=28, gaptv_iters=2, device="cpu")
    y = np.ones((16, 24 + 2 * 27), np.float32)
    out = dec.decode_cube(Cube(y), read_cube(d / "mask.mat"))
    assert out.shape == (28, 16, 24) and out.wavelength_units == "nm"
    np.testing.assert_array_equal(out.wavelengths, dec.wavelengths)
    assert out.attrs == {"method": dec.describe()}
    dec8 = CassiDecoder(method="gap-tv", bands=B, gaptv_iters=2, device="cpu")
    meas = read_cube(d / "meas.mat")
    assert dec8.decode_cube(meas, read_cube(d / "mask.mat").data[0]).wavelengths is None
    bad = Cube(np.ones((1, 16, 24), np.float32), valid=np.eye(16, 24, dtype=bool) == 0)
    with pytest.raises(InvalidValueError, match="m.mat: the mask has 16 NaN"):
        dec8.decode_cube(meas, bad, mask_name="m.mat")
    with pytest.raises(ShapeError, match="single 2-D image"):
        dec8.decode_cube(Cube(np.ones((2, 16, 38), np.float32)), bad.data[0])


def test_cassi_ensemble_threads_and_device_options(cassi_files):
    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    d = cassi_files
    w = d / "tiny8.safetensors"
    save_state_dict(build_model("s2former-tiny", in_chans=B).state_dict(), w,
                    metadata={"model_overrides": {"in_chans": B}})
    base = ("cassi", d / "meas.mat", "--mask", d / "mask.mat", "--bands", B,
            "--model", "s2former-tiny", "--weights", w)
    r = _run(*base, "--ensemble", "--threads", 1, "-o", d / "e.h5")
    assert r.exit_code == 0, r.output
    assert "flip ensemble" in _last(r)["method"]
    r = _run(*base, "--flip-ensemble", "-o", d / "f.h5")  # the old name still works
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(read_cube(d / "e.h5").data, read_cube(d / "f.h5").data)
    r = _run(*base, "--threads", -1, "-o", d / "t.h5")
    assert r.exit_code == 2 and "--threads" in r.stderr
    text = _run("cassi", "--help").stdout
    assert "--ensemble" in text and "--flip-ensemble" not in text and "--threads" in text
    from hsirestore.cli.common import DEVICE_HELP

    assert " ".join(DEVICE_HELP.split()[:3]) in " ".join(text.split())
