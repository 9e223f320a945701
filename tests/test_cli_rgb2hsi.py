import json

import imagecodecs
import numpy as np
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.io import read_cube

runner = CliRunner()


def _png(path, seed=0, bits=8, shape=(20, 28)):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.9, shape + (3,))
    arr = (x * (255 if bits == 8 else 65535)).round().astype(np.uint8 if bits == 8 else np.uint16)
    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(arr)))
    return path


def test_poly_single_file_with_preview(tmp_path):
    from hsirestore.io import read_cube

    src = _png(tmp_path / "a.png", bits=16)
    out = tmp_path / "a.h5"
    r = runner.invoke(app, ["rgb2hsi", str(src), "-o", str(out), "--method", "poly", "--preview"])
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["shape"] == [31, 20, 28] and line["output"] == str(out)
    cube = read_cube(out)
    assert cube.shape == (31, 20, 28)
    np.testing.assert_allclose(cube.wavelengths, np.arange(400, 701, 10))
    assert (tmp_path / "a_preview.png").exists() and src.exists()
    r = runner.invoke(app, ["rgb2hsi", str(src), "-o", str(out), "--method", "poly"])
    assert r.exit_code == 1 and "--force" in r.stderr


def test_batch_folder_skips_existing(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        _png(photos / f"p{i}.png", seed=i)
    outdir = tmp_path / "cubes"
    args = ["rgb2hsi", str(photos), "-o", str(outdir), "--method", "poly", "--format", "tif"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(l) for l in r.stdout.strip().splitlines()]
    assert len(lines) == 2 and all("seconds" in l for l in lines)
    assert sorted(p.name for p in outdir.iterdir()) == ["p0_hsi.tif", "p1_hsi.tif"]
    r = runner.invoke(app, args)
    assert [json.loads(l).get("skipped") for l in r.stdout.strip().splitlines()] == ["exists"] * 2


def test_shipped_mcga_weights_run(tmp_path):
    src = _png(tmp_path / "a.png")
    r = runner.invoke(app, ["rgb2hsi", str(src), "-o", str(tmp_path / "a.h5")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["method"] == "mcga-compact"
    cube = read_cube(tmp_path / "a.h5")
    assert cube.shape[0] == 31 and np.isfinite(cube.data).all()


def test_errors_are_one_line(tmp_path, monkeypatch):
    src = _png(tmp_path / "a.png")
    empty = tmp_path / "no_weights"
    empty.mkdir()
    with monkeypatch.context() as m:  # as if the weights were not installed
        m.setenv("HSIRESTORE_WEIGHTS", str(empty))
        r = runner.invoke(app, ["rgb2hsi", str(src), "-o", str(tmp_path / "o.h5")])
        assert r.exit_code == 1 and "mcga-compact.safetensors" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    cases = [  # option mistakes (an unknown model too) exit 2 (usage), a missing file 1
        (["--method", "poly", "--tta"], "--tta", 2),
        (["--method", "bogus"], "unknown method", 2),
        (["--method", "mcga", "--model", "nope"], "unknown model", 2),
        (["--method", "poly", "--camera", str(tmp_path / "none.csv")], "not found", 1),
    ]
    for extra, msg, code in cases:
        r = runner.invoke(app, ["rgb2hsi", str(src), "-o", str(tmp_path / "o.h5")] + extra)
        assert r.exit_code == code, (extra, r.output)
        assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(app, ["rgb2hsi", str(tmp_path / "missing.png"), "--method", "poly"])
    assert r.exit_code == 1 and "not found" in r.stderr


def test_camera_option_with_camspec(tmp_path, shared_data):
    src = _png(tmp_path / "a.png")
    cam = shared_data / "camera" / "camspec" / "Nokia_N900.csv"
    r = runner.invoke(app, ["rgb2hsi", str(src), "-o", str(tmp_path / "a.h5"), "--method", "poly",
                            "--camera", str(cam), "--srgb"])
    assert r.exit_code == 0, r.output


def test_train_mcga_help_and_bad_stage(tmp_path):
    r = runner.invoke(app, ["train", "mcga", "--help"])
    assert r.exit_code == 0 and "--stage" in r.stdout
    r = runner.invoke(app, ["train", "mcga", "--stage", "3", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "--stage" in r.stderr
    r = runner.invoke(app, ["train", "mcga", "--stage", "2", "--preset", "mcga-tiny",
                            "--out", str(tmp_path / "run2")])
    assert r.exit_code == 1
