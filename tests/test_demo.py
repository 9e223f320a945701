import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.demo import colorchecker_reflectances, synthetic_scene
from hsirestore.io import read_cube


def test_scene_is_made_of_real_reflectances():
    wl = np.arange(400, 701, 10.0)
    names, refl = colorchecker_reflectances(wl)
    assert len(names) == 24 and refl.shape == (24, 31)
    assert 0 < refl.min() and refl.max() < 1
    scene = synthetic_scene(wl, size=64, seed=1)
    assert scene.shape == (31, 64, 64) and scene.dtype == np.float32
    assert 0 <= scene.min() and scene.max() <= 1
    # deterministic for a seed, different across seeds
    assert np.array_equal(scene, synthetic_scene(wl, size=64, seed=1))
    assert not np.array_equal(scene, synthetic_scene(wl, size=64, seed=2))


def test_demo_gaptv_writes_everything(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", str(out), "--method", "gap-tv", "--size", "32"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert np.isfinite(res["mpsnr"]) and res["mpsnr"] > 10
    for name in ("scene_ref.h5", "measurement.mat", "mask.mat", "decoded.h5", "report.json",
                 "report.md", "report_bands.csv", "scene_ref_preview.png", "decoded_preview.png",
                 "decoded_spectra.png"):
        assert (out / name).exists(), name
    assert read_cube(out / "decoded.h5").shape == (28, 32, 32)
    assert read_cube(out / "measurement.mat").shape == (1, 32, 32 + 54)
    again = CliRunner().invoke(app, ["demo", str(out), "--method", "gap-tv", "--size", "32"])
    assert again.exit_code == 1 and "--force" in again.stderr


def test_demo_with_shipped_weights(tmp_path):
    from hsirestore.registry import get_spec
    from hsirestore.weights import read_manifest

    from hsirestore.inference.cassi import DEFAULT_MODEL

    if get_spec(DEFAULT_MODEL).weights not in read_manifest().get("files", {}):
        pytest.skip(f"no shipped {DEFAULT_MODEL} weights")
    r = CliRunner().invoke(app, ["demo", str(tmp_path / "d"), "--size", "32"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["mpsnr"] > 10
