import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.errors import FormatError
from hsirestore.io import Cube, read_cube, read_rgb, write_cube
from hsirestore.physics.rgb import builtin_response, load_camera_response, render_rgb

runner = CliRunner()


def test_camera_csv_formats(tmp_path):
    ntire = tmp_path / "ntire.csv"
    ntire.write_text("wavelength,R,G1,G2,B\n400,0.1,0.2,0.4,0.9\n500,0.2,0.6,0.8,0.3\n600,0.9,0.3,0.3,0.1\n")
    wl, r = load_camera_response(ntire)
    assert wl.tolist() == [400, 500, 600] and r.shape == (3, 3)
    assert r[1, 0] == pytest.approx(0.3)  # greens averaged
    camspec = tmp_path / "cam.csv"
    camspec.write_text("# camera\n# more\nWavelength[nm],R,G1,G2,B\n600,1,0,0,0\n400,0,0,0,1\n500,0,1,1,0\n")
    wl, r = load_camera_response(camspec)
    assert wl.tolist() == [400, 500, 600] and r[2, 0] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,x\n")
    with pytest.raises(FormatError):
        load_camera_response(bad)


def test_white_renders_to_one_in_green():
    wl = np.arange(400, 701, 10.0)
    rgb = render_rgb(np.ones((31, 2, 2), np.float32), wl, clip=False)
    assert rgb.shape == (3, 2, 2) and np.allclose(rgb[1], 1.0)
    bwl, resp = builtin_response()
    assert resp.shape[0] == 3 and (resp >= 0).all()


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.random((31, 16, 16)).astype(np.float32)
    wl = np.arange(400, 701, 10.0)
    write_cube(Cube(ref, wavelengths=wl), tmp_path / "ref.h5")
    write_cube(Cube(np.clip(ref + 0.01, 0, 1), wavelengths=wl), tmp_path / "pred.h5")
    return tmp_path


def test_evaluate_writes_reports(pair):
    r = runner.invoke(app, ["evaluate", str(pair / "pred.h5"), str(pair / "ref.h5"), "-o", str(pair / "rep")])
    assert r.exit_code == 0, r.output
    doc = json.loads((pair / "rep.json").read_text())
    assert doc["metrics"]["mpsnr"] > 35 and "conventions" in doc and len(doc["wavelengths"]) == 31
    assert (pair / "rep.md").read_text().startswith("# hsirestore metric report")
    assert len((pair / "rep_bands.csv").read_text().splitlines()) == 32
    r = runner.invoke(app, ["evaluate", str(pair / "pred.h5"), str(pair / "ref.h5"), "-o", str(pair / "rep")])
    assert r.exit_code == 1 and "--force" in r.stderr


def test_degrade_roundtrip_keeps_metadata(pair):
    r = runner.invoke(app, ["degrade", str(pair / "ref.h5"), str(pair / "noisy.h5"), "-d",
                            "noise:sigma=25", "--seed", "1", "--preview"])
    assert r.exit_code == 0, r.output
    out = read_cube(pair / "noisy.h5")
    ref = read_cube(pair / "ref.h5")
    assert out.shape == ref.shape and np.array_equal(out.wavelengths, ref.wavelengths)
    assert 0.05 < np.std(out.data - ref.data) < 0.15
    assert (pair / "noisy_preview.png").exists()
    r = runner.invoke(app, ["degrade", str(pair / "ref.h5"), str(pair / "x.h5"), "-d", "nosie"])
    assert r.exit_code == 2 and "unknown degradation" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_render_rgb_cli(pair):
    r = runner.invoke(app, ["render-rgb", str(pair / "ref.h5"), str(pair / "rgb.png"), "--bits", "16"])
    assert r.exit_code == 0, r.output
    rgb = read_rgb(pair / "rgb.png")
    assert rgb.shape == (3, 16, 16) and rgb.attrs["stored_dtype"] == "uint16"
    assert rgb.source_dtype == "float32" and rgb.attrs["scale"] == pytest.approx(1 / 65535)
    write_cube(Cube(np.ones((5, 4, 4), np.float32)), pair / "nowl.h5")
    r = runner.invoke(app, ["render-rgb", str(pair / "nowl.h5"), str(pair / "x.png")])
    assert r.exit_code == 1 and "no wavelengths" in r.stderr
