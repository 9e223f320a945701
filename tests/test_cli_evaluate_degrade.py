"""CLI: evaluate, degrade and render-rgb on generated fixtures, including error cases."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.io import Cube, read_cube, read_rgb, write_cube
from hsirestore.metrics import compute_metrics

runner = CliRunner()
WL = np.arange(400, 701, 10.0)


def _one_line_error(r, code=1):
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hsirestore: error:"), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:20] / 24.0
    ref = np.stack([0.3 + 0.4 * np.sin(3 * xx + k / 8) * yy for k in range(31)]).astype(np.float32)
    ref = np.clip(ref + 0.02 * rng.random(ref.shape, dtype=np.float32), 0, 1)
    write_cube(Cube(ref, wavelengths=WL), tmp_path / "ref.h5")
    pred = np.clip(ref + rng.normal(0, 0.02, ref.shape).astype(np.float32), 0, 1)
    write_cube(Cube(pred, wavelengths=WL), tmp_path / "pred.h5")
    return tmp_path, ref, pred


def test_evaluate_report_matches_library(scene, monkeypatch):
    d, ref, pred = scene
    r = runner.invoke(app, ["evaluate", str(d / "pred.h5"), str(d / "ref.h5"), "-o", str(d / "ev")])
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout.strip().splitlines()[-1])
    m = compute_metrics(pred, ref)
    assert line["mpsnr"] == pytest.approx(m["mpsnr"], abs=1e-5)
    assert "MPSNR" in r.stderr and "MSSIM" in r.stderr  # the table
    doc = json.loads((d / "ev.json").read_text())
    assert doc["metrics"]["sam_deg"] == pytest.approx(m["sam_deg"])
    assert doc["inputs"] == {"prediction": str(d / "pred.h5"), "reference": str(d / "ref.h5")}
    assert doc["per_band"][3] == {"band": 3, "wavelength": 430.0, "psnr": pytest.approx(m["per_band"]["psnr"][3]),
                                  "ssim": pytest.approx(m["per_band"]["ssim"][3]),
                                  "rmse": pytest.approx(m["per_band"]["rmse"][3])}
    assert set(doc["conventions"]) >= {"psnr", "psnr_global", "ssim", "sam", "ergas", "rmse", "mrae"}
    md = (d / "ev.md").read_text()
    assert "| MPSNR (dB) |" in md and "skimage" in md
    rows = (d / "ev_bands.csv").read_text().splitlines()
    assert rows[0] == "band,wavelength,psnr,ssim,rmse" and rows[1].startswith("0,400,") and len(rows) == 32
    # default prefix: ./<pred stem>_report; refuses to overwrite without --force
    monkeypatch.chdir(d)
    assert runner.invoke(app, ["evaluate", "pred.h5", "ref.h5"]).exit_code == 0
    assert (d / "pred_report.json").exists()
    assert "--force" in _one_line_error(runner.invoke(app, ["evaluate", "pred.h5", "ref.h5"]))
    assert runner.invoke(app, ["evaluate", "pred.h5", "ref.h5", "--force"]).exit_code == 0


def test_evaluate_identical_cubes_give_strict_json(scene):
    d, ref, _ = scene
    r = runner.invoke(app, ["evaluate", str(d / "ref.h5"), str(d / "ref.h5"), "-o", str(d / "same")])
    assert r.exit_code == 0, r.output
    doc = json.loads((d / "same.json").read_text())  # strict JSON: no Infinity literal
    assert "Infinity" not in (d / "same.json").read_text()
    assert doc["metrics"]["mpsnr"] == "inf" and doc["metrics"]["mssim"] == pytest.approx(1.0)
    assert "| inf |" in (d / "same.md").read_text()


def test_evaluate_errors(scene):
    d, ref, _ = scene
    write_cube(Cube(ref[:, :, :10], wavelengths=WL), d / "small.h5")
    msg = _one_line_error(runner.invoke(app, ["evaluate", str(d / "small.h5"), str(d / "ref.h5"),
                                              "-o", str(d / "x")]))
    assert "31x24x10" in msg and "differ in shape" in msg
    msg = _one_line_error(runner.invoke(app, ["evaluate", str(d / "nope.h5"), str(d / "ref.h5"),
                                              "-o", str(d / "x")]))
    assert "nope.h5" in msg
    msg = _one_line_error(runner.invoke(app, ["evaluate", str(d / "pred.h5"), str(d / "ref.h5"),
                                              "-o", str(d / "x"), "--data-range", "0"]), code=2)
    assert "data-range" in msg
    assert not (d / "x.json").exists()
    # integer counts compared with the default data range: a warning, still a report
    write_cube(Cube(np.rint(ref * 4095)), d / "counts.tif", dtype="uint16")
    r = runner.invoke(app, ["evaluate", str(d / "counts.tif"), str(d / "counts.tif"), "-o", str(d / "c")])
    assert r.exit_code == 0 and "warning" in r.stderr and "--data-range" in r.stderr


def test_degrade_float_cube_records_parameters(scene):
    d, ref, _ = scene
    r = runner.invoke(app, ["degrade", str(d / "ref.h5"), str(d / "deg.h5"), "-d",
                            "noise:sigma=20+inpaint:ratio=0.5", "--seed", "7", "--preview",
                            "--spectra", "3,4", "--spectra", "10,12"])
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout)
    assert line["seed"] == 7 and line["spec"] == "noise:sigma=20+inpaint:ratio=0.5"
    assert [s["name"] for s in line["steps"]] == ["noise", "inpaint"]
    assert 0.4 < line["mask_fraction"]["inpaint"] < 0.6 and line["normalisation"].startswith("auto:unit")
    out = read_cube(d / "deg.h5")
    assert out.shape == ref.shape and np.array_equal(out.wavelengths, WL)
    import h5py

    with h5py.File(d / "deg.h5") as f:  # the HDF5 writer stores Cube.attrs as attr_<key>
        rec = json.loads(f[out.attrs["dataset"]].attrs["attr_degradation"])
    assert rec["spec"] == line["spec"] and rec["seed"] == 7
    holes = (out.data == 0).all(axis=0)  # inpainted after the noise: exact zeros
    assert 0.4 < holes.mean() < 0.6
    assert (d / "deg_preview.png").exists() and (d / "deg_spectra.png").exists()
    # same seed -> same output; different seed -> different output
    runner.invoke(app, ["degrade", str(d / "ref.h5"), str(d / "deg2.h5"), "-d",
                        "noise:sigma=20+inpaint:ratio=0.5", "--seed", "7"])
    runner.invoke(app, ["degrade", str(d / "ref.h5"), str(d / "deg3.h5"), "-d",
                        "noise:sigma=20+inpaint:ratio=0.5", "--seed", "8"])
    assert np.array_equal(read_cube(d / "deg2.h5").data, out.data)
    assert not np.array_equal(read_cube(d / "deg3.h5").data, out.data)


def test_degrade_integer_counts_keep_scale_and_dtype(scene):
    d, ref, _ = scene
    counts = np.rint(ref * 4095).astype(np.float32)
    write_cube(Cube(counts, wavelengths=WL), d / "counts.hdr", dtype="uint16")
    r = runner.invoke(app, ["degrade", str(d / "counts.hdr"), str(d / "noisy.hdr"), "-d",
                            "noise:sigma=25.5", "--scale", "4095"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["dtype"] == "uint16"
    out = read_cube(d / "noisy.hdr")
    assert out.source_dtype == "uint16" and np.array_equal(out.data, np.rint(out.data))
    # sigma 25.5/255 = 0.1 of the normalised range = 409.5 counts
    assert np.std(out.data - counts) == pytest.approx(409.5, rel=0.1)
    assert json.loads(r.stdout)["normalisation"].startswith("scale:4095")


def test_degrade_keeps_invalid_pixels(tmp_path):
    x = np.full((5, 12, 12), 0.5, np.float32)
    x[:, 2, 3] = np.nan
    write_cube(Cube(x, wavelengths=np.linspace(450, 650, 5)), tmp_path / "holes.h5")
    r = runner.invoke(app, ["degrade", str(tmp_path / "holes.h5"), str(tmp_path / "o.h5"), "-d", "blur+noise"])
    assert r.exit_code == 0, r.output
    out = read_cube(tmp_path / "o.h5")
    assert out.valid is not None and not out.valid[2, 3] and out.valid.sum() == 143
    assert abs(out.data[:, out.valid].mean() - 0.5) < 0.02  # the hole did not darken the blur much


def test_degrade_errors(scene):
    d, _, _ = scene
    src, dst = str(d / "ref.h5"), str(d / "o.h5")
    msg = _one_line_error(runner.invoke(app, ["degrade", src, dst, "-d", "nosie"]), code=2)
    assert "unknown degradation 'nosie'" in msg and "niid-noise" in msg
    assert "must be a number" in _one_line_error(runner.invoke(app, ["degrade", src, dst, "-d", "noise:sigma=x"]), code=2)
    assert "ratio" in _one_line_error(runner.invoke(app, ["degrade", src, dst, "-d", "inpaint:ratio=2"]), code=2)
    assert "overwrite the input" in _one_line_error(runner.invoke(app, ["degrade", src, src, "-d", "noise", "--force"]), code=2)
    assert "--scale" in _one_line_error(runner.invoke(app, ["degrade", src, dst, "-d", "noise", "--scale", "0"]), code=2)
    assert "outside" in _one_line_error(runner.invoke(app, ["degrade", src, dst, "-d", "noise", "--preview",
                                                            "--spectra", "99,0"]), code=2)
    assert "--preview" in _one_line_error(runner.invoke(app, ["degrade", src, dst, "-d", "noise",
                                                              "--spectra", "1,1"]), code=2)
    assert not (d / "o.h5").exists()
    r = runner.invoke(app, ["degrade", src, dst])
    assert r.exit_code == 2  # missing required --degradation (usage error)
    assert runner.invoke(app, ["degrade", src, dst, "-d", "noise"]).exit_code == 0
    assert "--force" in _one_line_error(runner.invoke(app, ["degrade", src, dst, "-d", "noise"]))


def test_render_rgb_cameras_and_errors(scene, tmp_path):
    d, ref, _ = scene
    r = runner.invoke(app, ["render-rgb", str(d / "ref.h5"), str(d / "a.png")])
    assert r.exit_code == 0, r.output
    img = read_rgb(d / "a.png")
    assert img.shape == (3, 24, 20) and img.attrs["stored_dtype"] == "uint8"
    cam = tmp_path / "cam.csv"
    cam.write_text("#Camera: test\n400,0.1,0.1,0.9\n550,0.1,1.0,0.1\n700,0.9,0.1,0.0\n")
    r = runner.invoke(app, ["render-rgb", str(d / "ref.h5"), str(d / "b.tif"), "--camera", str(cam),
                            "--bits", "16", "--gamma"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["camera"] == str(cam)
    assert read_rgb(d / "b.tif").attrs["stored_dtype"] == "uint16"
    # a white cube renders to white with the built-in (white balanced) response
    write_cube(Cube(np.ones((31, 4, 4), np.float32), wavelengths=WL), d / "white.h5")
    assert runner.invoke(app, ["render-rgb", str(d / "white.h5"), str(d / "w.png")]).exit_code == 0
    assert (read_rgb(d / "w.png").data > 0.99).all()
    assert "8 or 16" in _one_line_error(runner.invoke(app, ["render-rgb", str(d / "ref.h5"), str(d / "c.png"),
                                                            "--bits", "12"]), code=2)
    assert "JPEG" in _one_line_error(runner.invoke(app, ["render-rgb", str(d / "ref.h5"), str(d / "c.jpg"),
                                                         "--bits", "16"]), code=2)
    assert ".png" in _one_line_error(runner.invoke(app, ["render-rgb", str(d / "ref.h5"), str(d / "c.bmp")]), code=2)
    bad = tmp_path / "bad.csv"
    bad.write_text("Wavelength,R,G,B\n400,a,b,c\n")
    assert "non-numeric" in _one_line_error(runner.invoke(app, ["render-rgb", str(d / "ref.h5"), str(d / "c.png"),
                                                                "--camera", str(bad)]))
    assert not (d / "c.png").exists()


def test_render_rgb_ntire_camera(scene, shared_data):
    d, _, _ = scene
    r = runner.invoke(app, ["render-rgb", str(d / "ref.h5"), str(d / "n.png"), "--camera", "ntire"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["camera"].endswith("ntire2022_rgb_qe.csv")


def test_help_has_examples():
    for cmd in ("evaluate", "degrade", "render-rgb"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "Examples:" in r.stdout and f"hsirestore {cmd} " in r.stdout
    assert "1/255" in runner.invoke(app, ["degrade", "--help"]).stdout


def test_version_option():
    from hsirestore import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith(f"hsirestore {__version__} ")
    top = runner.invoke(app, ["--help"])
    assert "--version" in top.stdout and "Examples:" in top.stdout
