"""One nodata rule everywhere (a pixel is invalid when any band is NaN or every band equals
nodata; single nodata values are filled from the pixel's other bands), inputs never
overwritten (even with --force), denoise --var/--layout and file.h5:/dataset inputs,
degrade not smearing nodata, simulate-cassi refusing holes and reading micrometres."""
import hashlib
import json

import h5py
import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.inference.engine import TiledPredictor
from hsirestore.inference.normalize import (band_means, fill_missing_entries, fit_scaling,
                                            invalid_mask, missing_entries)
from hsirestore.io import read_cube, write_cube
from hsirestore.io.cube import Cube

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth(bands=31, h=24, w=24, seed=0):
    """Smooth positive spectra (bands, h, w) in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, bands)[:, None, None]
    a, b = rng.uniform(0.2, 0.6, (1, h, w)), rng.uniform(-0.3, 0.3, (1, h, w))
    return (a + b * t + 0.05 * np.sin(6 * t)).astype(np.float32).clip(0.1, 0.9)


def _error_line(result):
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the rule itself
def test_invalid_mask_needs_every_band_at_nodata():
    x = _smooth(5, 4, 4)
    x[2] = 0  # a dead band, nodata 0: the pixels stay valid
    x[:, 1, 1] = 0  # every band at nodata: invalid
    x[3, 2, 2] = np.nan  # any NaN: invalid
    bad = invalid_mask(x, 0.0)
    assert bad.sum() == 2 and bad[1, 1] and bad[2, 2]
    holes = missing_entries(x, 0.0)
    assert holes is not None and holes[2].sum() == 16 - 2 and not holes[:, 1, 1].any()
    xi = np.round(np.nan_to_num(x) * 1000).astype(np.uint16)  # integer blocks: same rule
    assert invalid_mask(xi, 0).sum() == 1


def test_fill_missing_entries_interpolates_along_bands():
    x = np.array([1, 2, -9, -9, 5, -9], np.float32)[:, None, None] * np.ones((1, 1, 2), np.float32)
    x[:, 0, 1] = [-9, 2, 3, 4, -9, -9]
    holes = x == -9
    fill_missing_entries(x, holes)
    np.testing.assert_allclose(x[:, 0, 0], [1, 2, 3, 4, 5, 5])
    np.testing.assert_allclose(x[:, 0, 1], [2, 2, 3, 4, 4, 4])


def test_scaling_and_band_means_ignore_single_nodata_values():
    data = np.round(_smooth(8, 16, 16) * 10000).astype(np.float32)
    data[3] = 0  # dead band, nodata 0 (common in uint16 products)
    cube = Cube(data, nodata=0.0, source_dtype="uint16")
    s = fit_scaling(cube)
    assert "empty" not in s.describe()
    np.testing.assert_allclose(s.scale, np.percentile(np.delete(data, 3, axis=0), 99.9), rtol=1e-3)
    means = band_means(cube)
    assert means[3] == 0 and np.all(means[np.arange(8) != 3] > 1000)
    data2 = data.copy()
    data2[5, 2:4, 2:4] = -9999  # partial nodata of a float product
    m2 = band_means(Cube(data2, nodata=-9999.0))
    assert m2[5] > 1000


def test_engine_fills_partial_nodata_and_streams_alike():
    x = _smooth(6, 20, 20) * 10000
    x[4, 5:7, 5:7] = -9999  # one band missing in a few pixels
    x[:, 15, 15] = -9999  # a whole pixel missing
    cube = Cube(x, nodata=-9999.0)
    seen = []

    def model(t):
        seen.append(t.min().item())
        return t

    pred = TiledPredictor(model, tile=8, overlap=2, device="cpu")
    s = fit_scaling(cube, "percentile:99.9")
    y = pred.predict_array(cube, normalizer=s)
    assert min(seen) > 0  # the model never saw -9999
    assert np.isnan(y[:, 15, 15]).all()  # the invalid pixel comes back invalid
    ok = np.ones((20, 20), bool)
    ok[15, 15] = False
    assert np.isfinite(y[:, ok]).all()
    # the holes are interpolated between bands 3 and 5 of the same pixel
    np.testing.assert_allclose(y[4, 5, 5], (x[3, 5, 5] + x[5, 5, 5]) / 2, rtol=1e-4)


# ------------------------------------------------------------------ CLI
def test_denoise_uint16_dead_band_with_nodata_zero(tmp_path, hsivar_tiny_weights):
    data = np.round(_smooth(31, 24, 24) * 10000)
    data[7] = 0
    data[:, :2, :2] = 0  # a real nodata corner
    src = tmp_path / "zb.h5"
    write_cube(Cube(data.astype(np.float32), nodata=0.0, source_dtype="uint16",
                    wavelengths=np.linspace(400, 700, 31)), src, dtype="uint16")
    for extra in ([], ["--stream"]):
        dst = tmp_path / f"out{len(extra)}.h5"
        r = runner.invoke(app, ["denoise", str(src), "-o", str(dst), "-d", "noise", "--device", "cpu",
                                "--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights)] + extra)
        assert r.exit_code == 0, r.output
        out = read_cube(dst)
        assert out.valid is not None and (~out.valid).sum() == 4  # only the corner


def test_all_nan_cube_is_refused(tmp_path, hsivar_tiny_weights):
    src = tmp_path / "nan.h5"
    with h5py.File(src, "w") as f:
        f["cube"] = np.full((31, 40, 40), np.nan, np.float32)
    base = ["--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights), "--device", "cpu"]
    msg = _error_line(runner.invoke(app, ["denoise", str(src), "-o", str(tmp_path / "o.h5")] + base))
    assert "no valid pixel" in msg
    msg = _error_line(runner.invoke(app, ["degrade", str(src), str(tmp_path / "d.h5"), "-d", "noise"]))
    assert "no valid pixel" in msg


@pytest.mark.parametrize("stream", [False, True])
def test_denoise_never_overwrites_its_input(tmp_path, hsivar_tiny_weights, stream):
    src = tmp_path / "c.h5"
    write_cube(Cube(_smooth()), src)
    before = _digest(src)
    base = ["--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights), "--device", "cpu", "--force",
            "-d", "noise"] + (["--stream"] if stream else [])
    for target in (src, f"{src}:/other"):
        msg = _error_line(runner.invoke(app, ["denoise", str(src), "-o", str(target)] + base))
        assert "would overwrite the input" in msg and "even with --force" in msg
    assert _digest(src) == before


def test_other_commands_never_overwrite_inputs(tmp_path):
    cube = tmp_path / "c.h5"
    write_cube(Cube(_smooth(28, 16, 16), wavelengths=np.linspace(450, 650, 28)), cube)
    mask = tmp_path / "mask.mat"
    scipy.io.savemat(mask, {"mask": (np.random.default_rng(0).random((16, 16)) > 0.5).astype(np.float32)})
    before = _digest(cube), _digest(mask)
    cases = [["degrade", str(cube), str(cube), "-d", "noise", "--force"],
             ["simulate-cassi", str(cube), "--mask", str(mask), "-o", str(mask), "--force"],
             ["cassi", str(mask), "--mask", str(mask), "--method", "gap-tv", "-o", str(mask),
              "--force"]]
    for args in cases:
        assert "would overwrite the input" in _error_line(runner.invoke(app, args))
    assert (_digest(cube), _digest(mask)) == before


def test_denoise_var_layout_and_dataset_path(tmp_path, hsivar_tiny_weights):
    x = _smooth(31, 40, 40)
    src = tmp_path / "two.h5"
    with h5py.File(src, "w") as f:
        f["a"] = x
        f["b"] = x * 0.5
    base = ["--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights), "--device", "cpu", "-d", "noise"]
    msg = _error_line(runner.invoke(app, ["denoise", str(src), "-o", str(tmp_path / "o.h5")] + base))
    assert "--var" in msg
    r = runner.invoke(app, ["denoise", f"{src}:/b", "-o", str(tmp_path / "b.h5")] + base)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["denoise", str(src), "--var", "a", "-o", str(tmp_path / "a.h5")] + base)
    assert r.exit_code == 0, r.output
    assert read_cube(tmp_path / "a.h5").shape == (31, 40, 40)
    # default output names beside the input: file and dataset, so two datasets of one file
    # get two outputs in one batch
    r = runner.invoke(app, ["denoise", f"{src}:/a", f"{src}:/b"] + base)
    assert r.exit_code == 0, r.output
    outs = [json.loads(line)["output"] for line in r.output.splitlines() if line.startswith("{")]
    assert [o.rsplit("/", 1)[-1] for o in outs] == ["two_a_restored.h5", "two_b_restored.h5"]
    # bands-last .mat whose band axis is ambiguous without --layout
    mat = tmp_path / "sq.mat"
    scipy.io.savemat(mat, {"cube": np.moveaxis(_smooth(31, 31, 31), 0, -1)})
    r = runner.invoke(app, ["denoise", str(mat), "--layout", "bands-last",
                            "-o", str(tmp_path / "sq_out.h5")] + base)
    assert r.exit_code == 0, r.output
    assert "--layout must be" in _error_line(runner.invoke(
        app, ["denoise", str(mat), "--layout", "sideways"] + base))


def test_degrade_does_not_smear_nodata(tmp_path):
    x = _smooth(31, 24, 24)
    x[:, :4, :4] = -9999
    x[10, 12, 12] = -9999  # one missing value in a valid pixel
    src = tmp_path / "nd.h5"
    write_cube(Cube(x, nodata=-9999.0), src)
    dst = tmp_path / "blur.h5"
    r = runner.invoke(app, ["degrade", str(src), str(dst), "-d", "blur"])
    assert r.exit_code == 0, r.output
    y = read_cube(dst)
    ok = y.valid
    assert ok is not None and (~ok).sum() == 16
    vals = y.data[:, ok]
    vals = vals[vals != -9999]
    assert vals.min() > 0.05 and vals.max() < 1.0  # nothing from -9999 leaked into the blur
    assert y.data[10, 12, 12] == -9999  # the single missing value stays missing


def test_simulate_cassi_micrometres_and_holes(tmp_path):
    x = _smooth(31, 16, 16)
    mask = tmp_path / "mask.mat"
    scipy.io.savemat(mask, {"mask": (np.random.default_rng(0).random((16, 16)) > 0.5).astype(np.float32)})
    nm, um = tmp_path / "nm.h5", tmp_path / "um.h5"
    write_cube(Cube(x, wavelengths=np.linspace(400, 700, 31), wavelength_units="nm"), nm)
    write_cube(Cube(x, wavelengths=np.linspace(0.4, 0.7, 31), wavelength_units="um"), um)
    outs = []
    for src in (nm, um):
        out = tmp_path / (src.stem + "_meas.mat")
        r = runner.invoke(app, ["simulate-cassi", str(src), "--mask", str(mask), "--to-28", "-o", str(out)])
        assert r.exit_code == 0, r.output
        outs.append(read_cube(out).data)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5)
    far = tmp_path / "swir.h5"
    write_cube(Cube(x, wavelengths=np.linspace(1000, 2500, 31)), far)
    assert "do not cover" in _error_line(runner.invoke(
        app, ["simulate-cassi", str(far), "--mask", str(mask), "--to-28", "-o", str(tmp_path / "f.mat")]))
    holes = x.copy()
    holes[:, 3, 3] = np.nan
    hsrc = tmp_path / "holes.h5"
    write_cube(Cube(holes), hsrc)
    assert "invalid" in _error_line(runner.invoke(
        app, ["simulate-cassi", str(hsrc), "--mask", str(mask), "-o", str(tmp_path / "h.mat")]))
    one = tmp_path / "one.h5"
    write_cube(Cube(x[:1]), one)
    assert "several bands" in _error_line(runner.invoke(
        app, ["simulate-cassi", str(one), "--mask", str(mask), "-o", str(tmp_path / "o.mat")]))


def test_one_line_errors_for_wrong_files(tmp_path):
    mat = tmp_path / "cube.mat"
    scipy.io.savemat(mat, {"cube": np.zeros((4, 4, 3))})
    msg = _error_line(runner.invoke(app, ["rgb2hsi", str(mat), "-o", str(tmp_path / "o.h5")]))
    assert "not an RGB image" in msg
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(2000))
    msg = _error_line(runner.invoke(app, ["info", str(bad)]))
    assert "bad.tif" in msg and "internal error" not in msg


def test_evaluate_warns_about_different_scales(tmp_path):
    x = _smooth(31, 40, 40)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_cube(Cube(x * 10000), a)
    write_cube(Cube(x), b)
    r = runner.invoke(app, ["evaluate", str(a), str(b), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "differ in scale" in r.output


def test_garbage_tif_and_uppercase_envi_data_file(tmp_path):
    bad = tmp_path / "g.tif"
    bad.write_bytes(b"garbage")
    msg = _error_line(runner.invoke(app, ["info", str(bad)]))
    assert "not a readable TIFF" in msg
    write_cube(Cube(_smooth(5, 8, 9)), tmp_path / "x.hdr")
    (tmp_path / "x.hdr").rename(tmp_path / "X.HDR")
    (tmp_path / "x.img").rename(tmp_path / "X.BIN")
    r = runner.invoke(app, ["info", str(tmp_path / "X.BIN")])
    assert r.exit_code == 0 and "envi" in r.output


@pytest.mark.parametrize("stream", [False, True])
def test_envi_bad_bands_are_kept_as_read(tmp_path, hsivar_tiny_weights, stream):
    from hsirestore.inference.normalize import bad_bands, fill_bad_bands

    x = _smooth(40, 24, 24) * 1000
    bad = np.zeros(40, bool)
    bad[[0, 17, 18, 39]] = True
    x[bad] = np.random.default_rng(1).normal(0, 5000, (4, 24, 24))  # garbage in bad bands
    bbl = ["0" if v else "1" for v in bad]
    src = tmp_path / "bb.hdr"
    write_cube(Cube(x.astype(np.float32), wavelengths=np.linspace(400, 2500, 40),
                    attrs={"envi_header": {"bbl": bbl, "bands": 40}}), src)
    cube = read_cube(src)
    np.testing.assert_array_equal(bad_bands(cube, 40), bad)
    filled = fill_bad_bands(cube.data, bad)
    np.testing.assert_allclose(filled[17], cube.data[16] + (cube.data[19] - cube.data[16]) / 3, rtol=1e-5)
    np.testing.assert_array_equal(filled[0], cube.data[1])
    dst = tmp_path / "out.hdr"
    r = runner.invoke(app, ["denoise", str(src), "-o", str(dst), "-d", "noise", "--device", "cpu",
                            "--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights)]
                      + (["--stream"] if stream else []))
    assert r.exit_code == 0, r.output
    out = read_cube(dst)
    np.testing.assert_array_equal(out.data[bad], cube.data[bad])  # bad bands as read
    assert np.abs(out.data[~bad]).max() < 1500  # the garbage (~5000) did not reach the good bands
    assert out.attrs["envi_header"]["bbl"] == bbl


@pytest.mark.parametrize("suffix", [".hdr", ".tif", ".h5", ".mat"])
@pytest.mark.parametrize("stream", [False, True])
def test_integer_outputs_keep_valid_values_off_nodata(tmp_path, suffix, stream):
    from hsirestore.io import create_cube

    x = np.full((3, 8, 8), 50.0, np.float32)
    x[:, 2, 2] = [0.2, -3.0, 5.0]  # valid values that would round (or clip) to nodata 0
    x[:, 3, 3] = 0.1  # every band at nodata after rounding: a nodata pixel (the readers' rule)
    x[:, 5, 5] = np.nan  # an invalid pixel
    cube = Cube(x, nodata=0.0)
    path = tmp_path / f"o{suffix}"
    if stream:
        sink = create_cube(path, cube, x.shape, dtype="uint16")
        sink.write_window(0, 0, x)
        sink.commit()
    else:
        write_cube(cube, path, dtype="uint16")
    back = read_cube(path)
    if suffix != ".mat":  # .mat has no nodata field: its reader cannot flag the pixel
        assert back.valid is not None and not back.valid[5, 5] and back.valid[2, 2]
    np.testing.assert_array_equal(back.data[:, 2, 2], [1, 1, 5])  # one count above nodata
    np.testing.assert_array_equal(back.data[:, 3, 3], [0, 0, 0])
