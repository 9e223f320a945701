import json

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.io import read_cube
from hsirestore.physics.cassi import cassi_forward

B = 8


@pytest.fixture
def files(cassi_files):
    return cassi_files


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cassi_gaptv_with_preview_and_report(files):
    out = files / "cube.h5"
    r = _run("cassi", files / "meas.mat", "--mask", files / "mask.mat", "-o", out, "--method", "gap-tv",
             "--bands", B, "--iterations", 20, "--preview", "--reference", files / "truth.h5")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["shape"] == [B, 16, 24] and res["mpsnr"] > 15
    cube = read_cube(out)
    assert cube.shape == (B, 16, 24) and np.isfinite(cube.data).all()
    assert (files / "cube_preview.png").exists() and (files / "cube_report.json").exists()
    # no overwrite without --force
    r = _run("cassi", files / "meas.mat", "--mask", files / "mask.mat", "-o", out, "--method", "gap-tv",
             "--bands", B, "--iterations", 2)
    assert r.exit_code != 0 and "--force" in r.stderr


def test_simulate_then_decode_default_output(files):
    meas = files / "sim.mat"
    r = _run("simulate-cassi", files / "truth.h5", "--mask", files / "mask.mat", "-o", meas,
             "--shot-noise", 1000)
    assert r.exit_code == 0, r.output
    y = read_cube(meas).data[0]
    assert y.shape == (16, 24 + 2 * (B - 1))
    r = _run("cassi", meas, "--mask", files / "mask.mat", "--method", "gap-tv", "--bands", B,
             "--iterations", 5)
    assert r.exit_code == 0, r.output
    assert read_cube(files / "sim_cube.h5").shape == (B, 16, 24)


def _one_line_error(r):
    assert r.exit_code != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def test_cassi_errors(files):
    base = ["cassi", files / "meas.mat", "--mask", files / "mask.mat", "--method", "gap-tv",
            "--iterations", 2, "-o", files / "o.h5"]
    # geometry: the default 28 bands do not fit a 16x38 measurement of a 16x24 mask
    assert "expected" in _one_line_error(_run(*base))
    assert "step" in _one_line_error(_run(*base, "--bands", B, "--step", 3))
    # flip ensemble is for learned decoders
    assert "flip-ensemble" in _one_line_error(_run(*base, "--bands", B, "--flip-ensemble"))
    # wrong mask variable
    msg = _one_line_error(_run(*base, "--bands", B, "--mask-var", "nope"))
    assert "mask" in msg
    # NaN in the measurement
    y = scipy.io.loadmat(files / "meas.mat")["meas_real"]
    y[2, 3] = np.nan
    scipy.io.savemat(files / "nan.mat", {"meas_real": y})
    base[1] = files / "nan.mat"
    assert "NaN" in _one_line_error(_run(*base, "--bands", B))
    # unknown method
    _one_line_error(_run("cassi", files / "meas.mat", "--mask", files / "mask.mat", "--method", "x",
                         "--bands", B, "-o", files / "p.h5"))


def test_simulate_errors(files):
    scipy.io.savemat(files / "small.mat", {"mask": np.ones((8, 8), np.float32)})
    _one_line_error(_run("simulate-cassi", files / "truth.h5", "--mask", files / "small.mat",
                         "-o", files / "m.mat"))


def test_band_count_the_model_cannot_take(files):
    """The shipped/published S2 models decode 28 bands; asking for another count is refused."""
    from hsirestore.errors import ShapeError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    w = files / "tiny.safetensors"
    save_state_dict(build_model("s2former-tiny").state_dict(), w)
    with pytest.raises(ShapeError, match="decodes 28 bands"):
        CassiDecoder(model_name="s2former-tiny", weights=w, bands=B)
    r = _run("cassi", files / "meas.mat", "--mask", files / "mask.mat", "--bands", B,
             "--model", "s2former-tiny", "--weights", w, "-o", files / "o.h5")
    assert r.exit_code == 1 and "decodes 28 bands" in r.stderr


def test_cassi_flip_ensemble_with_a_model(files):
    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    w = files / "tiny8.safetensors"
    save_state_dict(build_model("s2former-tiny", in_chans=B).state_dict(), w,
                    metadata={"model_overrides": {"in_chans": B}})
    r = _run("cassi", files / "meas.mat", "--mask", files / "mask.mat", "--bands", B,
             "--model", "s2former-tiny", "--weights", w, "--flip-ensemble", "-o", files / "f.h5")
    assert r.exit_code == 0, r.output
    assert "flip ensemble" in json.loads(r.stdout.strip().splitlines()[-1])["method"]
    assert read_cube(files / "f.h5").shape == (B, 16, 24)


def test_cassi_batch_folder(files):
    d = files / "meas"
    d.mkdir()
    mask = read_cube(files / "mask.mat").data[0]
    truth = read_cube(files / "truth.h5").data
    for name, gain in (("a", 1.0), ("b", 0.5)):
        scipy.io.savemat(d / f"{name}.mat", {"meas": cassi_forward(truth * gain, mask, 2)})
    scipy.io.savemat(d / "mask_copy.mat", {"mask": mask})  # masks in the folder are skipped
    (d / "bad.mat").write_bytes(b"MATLAB 5.0 garbage")
    out = files / "cubes"
    log = files / "log.jsonl"
    args = ["cassi", d, "--mask", files / "mask.mat", "--method", "gap-tv", "--bands", B,
            "--iterations", 5, "-o", out, "--summary", log]
    r = _run(*args)
    assert r.exit_code == 1, r.output  # bad.mat failed, the others were decoded
    recs = {json.loads(ln)["input"].split("/")[-1]: json.loads(ln) for ln in r.stdout.splitlines()}
    assert set(recs) == {"a.mat", "b.mat", "bad.mat"}
    assert recs["a.mat"]["status"] == "ok" and recs["bad.mat"]["status"] == "error"
    a, b = read_cube(out / "a_cube.h5").data, read_cube(out / "b_cube.h5").data
    np.testing.assert_allclose(b, 0.5 * a, rtol=1e-3, atol=1e-5)  # linear in scale
    assert len(log.read_text().splitlines()) == 3
    r = _run(*args)  # finished outputs are skipped
    recs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert sorted(x["status"] for x in recs) == ["error", "skipped", "skipped"]
    msg = _run("cassi", d / "a.mat", d / "b.mat", "--mask", files / "mask.mat", "--reference",
               files / "truth.h5", "-o", out)
    assert msg.exit_code != 0 and "one measurement" in msg.output
