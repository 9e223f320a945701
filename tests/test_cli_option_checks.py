"""Option checks found by a user-experience audit: cassi tiling/iterations/reference checks
and report figures, weights errors in one line, reported model names, denoise batch output
collisions and folders, denoise --temperature/--seed, auto-detected inpainting."""
import json

import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.inference.restore import auto_degradation
from hsirestore.io import Cube, read_cube, write_cube
from hsirestore.physics.cassi import cassi_forward
from hsirestore.physics.degradations import parse_degradation

runner = CliRunner()
B = 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cassi_files(tmp_path):
    rng = np.random.default_rng(0)
    x = np.full((B, 40, 40), 0.2, np.float32)
    x[:, 8:30, 6:30] = np.linspace(0.3, 0.9, B, dtype=np.float32)[:, None, None]
    mask = (rng.random((40, 40)) > 0.5).astype(np.float32)
    write_cube(Cube(x, wavelengths=np.linspace(450, 650, B)), tmp_path / "truth.h5")
    scipy.io.savemat(tmp_path / "mask.mat", {"mask": mask})
    scipy.io.savemat(tmp_path / "meas.mat", {"meas": cassi_forward(x, mask, 2)})
    return tmp_path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _error_line(result):
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_cassi_option_checks(cassi_files):
    d = cassi_files
    base = ["cassi", d / "meas.mat", "--mask", d / "mask.mat", "--bands", B]
    assert "at least 16" in _error_line(_run(*base, "--tile", 4, "-o", d / "a.h5"))
    assert "--iterations must be >= 1" in _error_line(
        _run(*base, "--method", "gap-tv", "--iterations", -1, "-o", d / "a.h5"))
    assert "apply to --method s2former" in _error_line(
        _run(*base, "--method", "gap-tv", "--model", "s2former-compact", "-o", d / "a.h5"))
    assert "--overlap must be >= 0" in _error_line(_run(*base, "--overlap", -3, "-o", d / "a.h5"))
    # a reference of the wrong shape is refused before anything is decoded or written
    write_cube(Cube(np.zeros((B, 20, 20), np.float32)), d / "small.h5")
    msg = _error_line(_run(*base, "--method", "gap-tv", "--reference", d / "small.h5", "-o", d / "a.h5"))
    assert "does not match" in msg and not (d / "a.h5").exists()


def test_cassi_small_tiles_advance_by_most_of_a_tile(cassi_files, monkeypatch):
    from hsirestore.inference.cassi import CassiDecoder

    calls = []
    dec = CassiDecoder(method="gap-tv", tile=16, overlap=64, bands=B, gaptv_iters=2)
    real = dec._run_tile

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(dec, "_run_tile", counting)
    m = read_cube(cassi_files / "mask.mat").data[0]
    y = read_cube(cassi_files / "meas.mat").data[0]
    out = dec.decode(y, m)
    assert out.shape == (B, 40, 40) and np.isfinite(out).all()
    assert len(calls) <= 16  # overlap clamped to a quarter tile: 4 x 4 tiles, not 25 x 25


def test_cassi_reference_figures_match_evaluate(cassi_files):
    d = cassi_files
    r = _run("cassi", d / "meas.mat", "--mask", d / "mask.mat", "--bands", B, "--method", "gap-tv",
             "--iterations", 20, "--reference", d / "truth.h5", "-o", d / "cube.h5")
    assert r.exit_code == 0, r.output
    from_cassi = json.loads(r.stdout.strip().splitlines()[-1])["mpsnr"]
    r = _run("evaluate", d / "cube.h5", d / "truth.h5", "-o", d / "rep")
    assert r.exit_code == 0, r.output
    from_eval = json.loads((d / "rep.json").read_text())["metrics"]["mpsnr"]
    assert from_cassi == pytest.approx(from_eval, abs=1e-3)


def test_weights_errors_are_one_short_line(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    cube = tmp_path / "c.h5"
    write_cube(Cube(np.random.default_rng(0).random((31, 40, 40)).astype(np.float32)), cube)
    msg = _error_line(_run("denoise", cube, "-o", tmp_path / "o.h5", "--weights", junk, "-d", "noise"))
    assert "not a safetensors file" in msg
    from hsirestore.weights import shipped_weights_path

    other = shipped_weights_path("s2former-gaptv.safetensors")
    msg = _error_line(_run("denoise", cube, "-o", tmp_path / "o.h5", "--weights", other, "-d", "noise"))
    assert "holds weights of the cassi model 's2former-gaptv', not a restoration model" in msg
    # the same tensors in a file that names no model: they do not fit hsivar-compact
    from hsirestore.weights import load_state_dict, save_state_dict

    bare = tmp_path / "bare.safetensors"
    save_state_dict(load_state_dict(other)[0], bare)
    msg = _error_line(_run("denoise", cube, "-o", tmp_path / "o.h5", "--weights", bare, "-d", "noise"))
    assert "does not fit hsivar-compact" in msg and "missing keys" in msg and "more" in msg
    assert len(msg) < 600


def test_reported_model_name_follows_the_weights(tmp_path):
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.inference.restore import Restorer
    from hsirestore.weights import shipped_weights_path

    dec = CassiDecoder(weights=shipped_weights_path("s2former-gaptv.safetensors"), device="cpu")
    assert dec.describe().startswith("s2former-gaptv")
    r = Restorer(model_name="hsivar-tiny", weights=shipped_weights_path("hsivar-compact.safetensors"),
                 device="cpu")
    assert r.describe().startswith("hsivar-compact")


def test_denoise_batch_collisions_and_folders(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_cube(Cube(np.random.default_rng(0).random((31, 40, 40)).astype(np.float32)),
                   tmp_path / sub / "x.h5")
    ins = [tmp_path / "a" / "x.h5", tmp_path / "b" / "x.h5"]
    msg = _error_line(_run("denoise", *ins, "-o", tmp_path / "out", "-d", "noise"))
    assert "would both write" in msg and not (tmp_path / "out").exists()
    msg = _error_line(_run("denoise", *ins, "-o", tmp_path / "out.h5", "-d", "noise"))
    assert "need an output folder" in msg and not (tmp_path / "out.h5").exists()
    # one input, -o a folder that does not exist yet: NAME_restored inside it
    r = _run("denoise", ins[0], "-o", tmp_path / "newdir", "-d", "noise", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "newdir" / "x_restored.h5").exists()
    assert "--temperature" in _error_line(_run("denoise", ins[0], "-o", tmp_path / "t.h5",
                                               "--temperature", "nan"))
    assert "--seed must be" in _error_line(_run("denoise", ins[0], "-o", tmp_path / "t.h5",
                                                "--seed", -1))


def test_auto_detects_scattered_missing_pixels():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 31)[:, None, None]
    r, c = np.mgrid[0:128, 0:128] / 128.0
    phase = (np.sin(5 * r) + np.cos(7 * c) + 0.1 * rng.random((128, 128)))[None]  # smooth scene
    x = (0.3 + 0.2 * np.sin(3 * t + phase)).astype(np.float32)
    y, _ = parse_degradation("inpaint").apply(x, 0)
    names, info = auto_degradation(y)
    assert names == ["inpaint"] and info["missing_pixels"] == pytest.approx(0.7, abs=0.02)
    y, _ = parse_degradation("noise:sigma=30+inpaint").apply(x, 0)
    names, info = auto_degradation(y)
    # few 2x2 blocks survive 70 % holes, so iid/non-iid may go either way
    assert names[0] in ("noise", "niid-noise") and names[1:] == ["inpaint"]
    assert info["sigma_255"] == pytest.approx(30, abs=4)
    border = x.copy()
    border[:, :20] = 0  # a blank border is not inpainting
    assert "inpaint" not in auto_degradation(border)[0]


def test_usage_errors_are_one_line_through_the_entry_point():
    import subprocess
    import sys

    for args, expect in ((["denoise", "--bogus", "x"], "No such option: --bogus"),
                         (["cassi", "meas.mat"], "Missing option '--mask'"),
                         (["denoise", "a.h5", "--tile", "abc"], "Invalid value for '--tile'")):
        r = subprocess.run([sys.executable, "-m", "hsirestore", *args], capture_output=True,
                           text=True, timeout=120)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith("hsirestore: error: ") and expect in lines[0]
    r = subprocess.run([sys.executable, "-m", "hsirestore"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "Usage:" in r.stdout


def test_full_disk_is_one_clear_error(tmp_path, monkeypatch):
    import errno
    import os
    import shutil
    from collections import namedtuple

    from hsirestore.errors import OutputError
    from hsirestore.io import create_cube

    cube = Cube(np.random.default_rng(0).random((31, 40, 40)).astype(np.float32))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**6, 10**6 - 1000, 1000))
    for name in ("o.hdr", "o.h5", "o.tif", "o.mat"):
        with pytest.raises(OutputError, match="free on that disk"):
            write_cube(cube, tmp_path / name)
        with pytest.raises(OutputError, match="free on that disk"):
            create_cube(tmp_path / name, cube, cube.shape)
    assert not list(tmp_path.iterdir())
    monkeypatch.undo()

    # a disk that fills up between the check and the memory map: fallocate fails cleanly
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(OutputError, match="not enough disk space"):
        create_cube(tmp_path / "s.hdr", cube, cube.shape)
    assert not list(tmp_path.iterdir())


def test_rgb2hsi_tile_checks():
    from hsirestore.errors import OptionError
    from hsirestore.inference.rgb2hsi import RgbToHsi

    with pytest.raises(OptionError, match="at least 16; got 4"):
        RgbToHsi(method="poly", tile=4)
    assert RgbToHsi(method="poly", tile=32).overlap == 8  # at most a quarter of the tile


def test_library_errors_are_typed():
    from hsirestore.errors import HsiRestoreError, InvalidValueError, OptionError, ShapeError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.inference.restore import Restorer

    with pytest.raises(ShapeError):
        Cube(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError):  # typed errors are ValueErrors too
        Cube(np.zeros((3, 4, 4), np.float32), wavelengths=[1, 2])
    with pytest.raises(OptionError):
        Restorer(device="cpu", temperature=float("nan"))
    r = Restorer(device="cpu")
    with pytest.raises(ShapeError, match="empty"):
        r.restore(np.zeros((31, 0, 5), np.float32))
    with pytest.raises(InvalidValueError, match="no valid pixel"):
        r.restore(np.full((31, 8, 8), np.nan, np.float32))
    with pytest.raises(OptionError):
        CassiDecoder(method="gap-tv", gaptv_weight=float("nan"))
    with pytest.raises(ShapeError, match="empty"):
        CassiDecoder(method="gap-tv").decode(np.zeros((0, 54)), np.zeros((0, 0)))
    assert issubclass(ShapeError, HsiRestoreError)


def test_formats_widen_types_they_cannot_store(tmp_path):
    c = Cube(np.round(np.random.default_rng(0).random((3, 8, 8)) * 100 - 50).astype(np.float32))
    for ext in ("hdr", "tif"):
        for dt, stored in (("int8", "int16"), ("float16", "float32")):
            path = tmp_path / f"a_{dt}.{ext}"
            write_cube(c, path, dtype=dt)
            back = read_cube(path)
            assert back.source_dtype == stored
            np.testing.assert_array_equal(back.data, c.data)


def test_streamed_preview_is_read_subsampled(tmp_path, monkeypatch):
    import hsirestore.io as hio
    from hsirestore.preview import decimated

    x = np.random.default_rng(0).random((31, 300, 200)).astype(np.float32)
    x[:, 0, 0] = np.nan
    src = hio.ArraySource(Cube(x))
    small = decimated(src, max_side=100, rows_per_read=7)
    np.testing.assert_array_equal(small.data[:, 1:, 1:], x[:, ::3, ::3][:, 1:, 1:])
    assert small.valid is not None and not small.valid[0, 0]
    # denoise --stream --preview never reads the whole output back
    cube = tmp_path / "c.h5"
    write_cube(Cube(x[:, :64, :64].copy()), cube)

    def no_whole_read(*a, **k):
        raise AssertionError("read the whole output")

    monkeypatch.setattr(hio, "read_cube", no_whole_read)
    r = _run("denoise", cube, "-o", tmp_path / "o.h5", "-d", "noise", "--stream", "--preview",
             "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o_preview.png").exists()


def test_gdal_block_cache_is_bounded():
    import os

    import hsirestore.io.geotiff  # noqa: F401

    assert os.environ.get("GDAL_CACHEMAX")


def test_weights_name_their_preset(tmp_path):
    import torch

    from hsirestore.inference.restore import Restorer
    from hsirestore.inference.rgb2hsi import RgbToHsi
    from hsirestore.registry import build_model, get_spec
    from hsirestore.weights import save_state_dict

    torch.manual_seed(0)
    m = build_model("mcga-tiny")
    path = tmp_path / "mcga.safetensors"
    save_state_dict(m.state_dict(), path, metadata={"model": "mcga-tiny",
                                                    "config": get_spec("mcga-tiny").config})
    pred = RgbToHsi(weights=path, device="cpu")  # no --model: the file says mcga-tiny
    assert pred.model_name == "mcga-tiny"
    # a training last.pt of hsivar-tiny given to a default (hsivar-compact) Restorer
    h = build_model("hsivar-tiny")
    h.init_condition_encoder()
    ckpt = tmp_path / "last.pt"
    torch.save({"model": h.state_dict(), "config": {"preset": "hsivar-tiny", "model_overrides": {}},
                "step": 3}, ckpt)
    r = Restorer(weights=ckpt, device="cpu")
    assert r.describe().startswith("hsivar-tiny")


def test_version_matches_pyproject():
    import re
    from pathlib import Path

    import hsirestore

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert hsirestore.__version__ == re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def test_batches_never_rewrite_their_own_inputs_and_summary_goes_into_the_new_folder(tmp_path):
    import hashlib

    x = np.random.default_rng(0).random((31, 40, 40)).astype(np.float32)
    a, a_out = tmp_path / "a.h5", tmp_path / "a_restored.h5"
    write_cube(Cube(x), a)
    write_cube(Cube(x * 0.5), a_out)  # also an input of the batch
    before = hashlib.sha256(a_out.read_bytes()).hexdigest()
    msg = _error_line(_run("denoise", a, a_out, "-d", "noise", "--force"))
    assert "would overwrite the input" in msg
    assert hashlib.sha256(a_out.read_bytes()).hexdigest() == before
    msg = _error_line(_run("denoise", a, "-o", tmp_path / "s.h5", "--summary", a, "-d", "noise"))
    assert "would overwrite the input" in msg
    # --summary inside the output folder that the command creates
    r = _run("denoise", a, "-o", tmp_path / "new", "--summary", tmp_path / "new" / "log.jsonl",
             "-d", "noise", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "new" / "log.jsonl").read_text().count("\n") == 1


def test_layout_option_everywhere_and_auto_ignores_invalid_pixels(tmp_path):
    import scipy.io

    from hsirestore.inference.restore import auto_degradation

    sq = tmp_path / "sq.mat"
    x = np.random.default_rng(0).random((31, 31, 31)).astype(np.float32)
    scipy.io.savemat(sq, {"cube": np.moveaxis(x, 0, -1)})
    for args in (["degrade", sq, tmp_path / "d.h5", "-d", "noise"],
                 ["evaluate", sq, sq, "-o", tmp_path / "rep"],
                 ["render-rgb", sq, tmp_path / "p.png"]):
        assert "--layout" in _error_line(_run(*args))
        r = _run(*args, "--layout", "bands-last")
        assert r.exit_code == 0 or "--layout" not in r.output, r.output
    # scattered NaN (invalid) pixels are not inpainting holes
    t = np.linspace(0, 1, 31)[:, None, None]
    r_, c_ = np.mgrid[0:128, 0:128] / 128.0
    clean = (0.4 + 0.2 * np.sin(3 * t + np.sin(5 * r_) + np.cos(7 * c_))).astype(np.float32)
    holes = np.random.default_rng(1).random((128, 128)) < 0.3
    clean[:, holes] = np.nan
    assert "inpaint" not in auto_degradation(clean)[0]


def test_weights_of_another_task_and_poly_files_are_named():
    from hsirestore.baselines import RootPolyModel
    from hsirestore.errors import ModelError
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.weights import shipped_weights_path

    with pytest.raises(ModelError, match="restore model 'hsivar-compact', not a CASSI decoder"):
        CassiDecoder(weights=shipped_weights_path("hsivar-compact.safetensors"), device="cpu")
    with pytest.raises(ModelError, match=r"\.npz file"):
        RootPolyModel.load(shipped_weights_path("mcga-compact.safetensors"))


def test_info_json_is_strict_and_previews_handle_constant_and_invalid(tmp_path):
    import json

    from hsirestore.preview import false_colour, spectra_plot

    x = np.full((5, 16, 16), 0.3, np.float32)
    cube = tmp_path / "c.h5"
    write_cube(Cube(x, nodata=float("nan")), cube)
    r = _run("info", cube, "--json")
    assert r.exit_code == 0, r.output
    json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    img = false_colour(x)  # a constant cube is grey, not the black of invalid pixels
    assert 100 < img.mean() < 220
    bg = np.zeros((3, 32, 32), np.float32)
    bg[:, 10:14, 10:14] = 0.003  # a small object on a dominant zero background
    assert false_colour(bg)[12, 12].max() > 200
    y = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    y[:, 0, 0] = -9999
    ok = np.ones((8, 8), bool)
    ok[0, 0] = False
    a = spectra_plot(y, [(0, 0), (3, 3)], valid=ok)
    b = spectra_plot(y, [(3, 3)])
    # the invalid pixel did not stretch the value axis to -9999: same tick labels
    np.testing.assert_array_equal(a[:, :55], b[:, :55])
