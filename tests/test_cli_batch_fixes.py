"""rgb2hsi batch behaviour (like denoise), demo option checks, seeds and other option values,
degradation-name hints and `models --task`: every user error is one line and a non-zero exit,
and nothing is written before the options are checked."""
import json

import imagecodecs
import numpy as np
import pytest
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.errors import OptionError
from hsirestore.io import Cube, read_cube, write_cube
from hsirestore.physics.degradations import parse_degradation

runner = CliRunner()
POLY = ["--method", "poly"]


def _png(path, seed=0, shape=(12, 16)):
    rng = np.random.default_rng(seed)
    arr = (rng.uniform(0.05, 0.9, shape + (3,)) * 255).round().astype(np.uint8)
    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(arr)))
    return path


def _lines(r):
    return [json.loads(line) for line in r.stdout.strip().splitlines()]


def _one_error(r, *needles, code=1):
    assert r.exit_code == code, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hsirestore: error: "), r.stderr
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def _usage_error(r, *needles):
    """A bad option value: one line and exit status 2, as for Click's own usage errors."""
    return _one_error(r, *needles, code=2)


# ------------------------------------------------------------------ rgb2hsi batches
def test_rgb2hsi_batch_continues_after_bad_image_with_summary(tmp_path):
    photos = tmp_path / "p"
    photos.mkdir()
    _png(photos / "a.png")
    (photos / "b.png").write_text("not a png")
    _png(photos / "c.png", seed=1)
    out, summary = tmp_path / "out", tmp_path / "summary.jsonl"
    r = runner.invoke(app, ["rgb2hsi", str(photos), "-o", str(out), "--summary", str(summary)]
                      + POLY)
    assert r.exit_code == 1
    lines = _lines(r)
    assert [(l["input"].rsplit("/", 1)[-1], l["status"]) for l in lines] == [
        ("a.png", "ok"), ("b.png", "error"), ("c.png", "ok")]
    for l in lines:
        assert {"input", "output", "status", "seconds", "message"} <= set(l)
    assert lines[0]["shape"] == [31, 12, 16] and "root-polynomial" in lines[0]["method"]
    assert "cannot decode" in lines[1]["message"]
    assert r.stderr.strip().splitlines() == ["hsirestore: error: 1 of 3 inputs failed"]
    assert sorted(p.name for p in out.iterdir()) == ["a_hsi.h5", "c_hsi.h5"]
    assert [json.loads(l) for l in summary.read_text().splitlines()] == lines
    # again: finished outputs are skipped, the bad file still fails, the summary grows
    r = runner.invoke(app, ["rgb2hsi", str(photos), "-o", str(out), "--summary", str(summary)]
                      + POLY)
    assert r.exit_code == 1
    assert [l["status"] for l in _lines(r)] == ["skipped", "error", "skipped"]
    assert len(summary.read_text().splitlines()) == 6


def test_rgb2hsi_batch_missing_file_is_reported_per_file(tmp_path):
    a = _png(tmp_path / "a.png")
    r = runner.invoke(app, ["rgb2hsi", str(a), str(tmp_path / "gone.png"), "-o",
                            str(tmp_path / "o")] + POLY)
    assert r.exit_code == 1
    lines = _lines(r)
    assert [l["status"] for l in lines] == ["ok", "error"] and "not found" in lines[1]["message"]


def test_rgb2hsi_folder_skips_its_own_outputs_and_hidden_files(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    _png(photos / "photo.png")
    _png(photos / ".hidden.png")
    args = ["rgb2hsi", str(photos), "--format", "tif", "--preview"] + POLY
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in photos.iterdir()) == [
        ".hidden.png", "photo.png", "photo_hsi.tif", "photo_hsi_preview.png"]
    r = runner.invoke(app, args)  # the outputs beside the photo are not read as photos
    assert r.exit_code == 0, r.output
    lines = _lines(r)
    assert len(lines) == 1 and lines[0]["status"] == "skipped"
    (photos / "photo.png").unlink()
    _one_error(runner.invoke(app, args), "no PNG/JPEG/TIFF images")


def test_rgb2hsi_colliding_outputs_are_refused_before_any_work(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    _png(photos / "photo.png")
    (photos / "photo.jpg").write_bytes(imagecodecs.jpeg_encode(np.zeros((8, 8, 3), np.uint8)))
    _usage_error(runner.invoke(app, ["rgb2hsi", str(photos), "-o", str(tmp_path / "o")] + POLY),
                 "would both write")
    assert not (tmp_path / "o").exists()
    # the same name in two folders
    other = tmp_path / "other"
    other.mkdir()
    _png(other / "photo.png")
    _usage_error(runner.invoke(app, ["rgb2hsi", str(photos / "photo.png"), str(other / "photo.png"),
                                     "-o", str(tmp_path / "o")] + POLY), "would both write")


def test_rgb2hsi_several_inputs_need_a_folder_output(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    _usage_error(runner.invoke(app, ["rgb2hsi", str(a), str(b), "-o", str(tmp_path / "out.h5")]
                               + POLY), "output folder")
    assert not (tmp_path / "out.h5").exists()


def test_rgb2hsi_single_input_into_a_folder(tmp_path):
    a = _png(tmp_path / "a.png")
    existing = tmp_path / "existing"
    existing.mkdir()
    r = runner.invoke(app, ["rgb2hsi", str(a), "-o", str(existing)] + POLY)
    assert r.exit_code == 0, r.output
    assert _lines(r)[0]["output"] == str(existing / "a_hsi.h5")
    assert read_cube(existing / "a_hsi.h5").shape == (31, 12, 16)
    r = runner.invoke(app, ["rgb2hsi", str(a), "-o", str(tmp_path / "new"), "--format", "tif"]
                      + POLY)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "new" / "a_hsi.tif").exists()
    # the folder's output exists: refused like any other existing output
    _one_error(runner.invoke(app, ["rgb2hsi", str(a), "-o", str(existing)] + POLY), "--force")


def test_rgb2hsi_single_errors_are_one_line_and_early(tmp_path):
    a = _png(tmp_path / "a.png")
    _usage_error(runner.invoke(app, ["rgb2hsi", str(a), "-o", str(tmp_path / "x.png")] + POLY),
                 "31-band cube")
    assert not (tmp_path / "x.png").exists()
    bad = tmp_path / "bad.png"
    bad.write_text("junk")
    _one_error(runner.invoke(app, ["rgb2hsi", str(bad)] + POLY), "cannot decode")
    _usage_error(runner.invoke(app, ["rgb2hsi", str(a), "--summary",
                                     str(tmp_path / "no" / "s.jsonl")] + POLY), "--summary")


def test_rgb2hsi_tta_options_without_tta_warn(tmp_path):
    a = _png(tmp_path / "a.png")
    r = runner.invoke(app, ["rgb2hsi", str(a), "-o", str(tmp_path / "a.h5"), "--tta-steps", "3",
                            "--tta-lr", "0.01"] + POLY)
    assert r.exit_code == 0, r.output
    assert r.stderr.strip().splitlines() == [
        "hsirestore: warning: --tta-steps and --tta-lr are ignored without --tta"]
    r = runner.invoke(app, ["rgb2hsi", str(a), "-o", str(tmp_path / "b.h5")] + POLY)
    assert r.exit_code == 0 and r.stderr == ""


# ------------------------------------------------------------------ demo
@pytest.mark.parametrize("extra, msg", [
    (["--size", "0"], "--size"), (["--size", "-5"], "--size"), (["--size", "4"], "--size"),
    (["--seed", "-1"], "--seed"), (["--method", "foo"], "unknown method"),
    (["--device", "tpu"], "unknown device"),
])
def test_demo_checks_options_before_writing(tmp_path, extra, msg):
    out = tmp_path / "dm"
    _usage_error(runner.invoke(app, ["demo", str(out), "--method", "gap-tv", "--size", "16"]
                               + extra), msg)
    assert not out.exists()


def test_demo_refuses_existing_outputs_before_writing(tmp_path):
    out = tmp_path / "dm"
    out.mkdir()
    (out / "decoded.h5").write_bytes(b"old")
    _one_error(runner.invoke(app, ["demo", str(out), "--method", "gap-tv", "--size", "16"]),
               "decoded.h5", "--force")
    assert [p.name for p in out.iterdir()] == ["decoded.h5"]


def test_synthetic_scene_rejects_bad_size_and_seed():
    from hsirestore.demo import synthetic_scene

    wl = np.arange(450, 651, 50.0)
    for size, seed in [(0, 0), (-5, 0), (16, -1)]:
        with pytest.raises(OptionError):
            synthetic_scene(wl, size=size, seed=seed)


# ------------------------------------------------------------------ seeds and option values
@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    write_cube(Cube(rng.uniform(0.1, 0.9, (4, 8, 8)).astype(np.float32)), tmp_path / "c.h5")
    write_cube(Cube(rng.uniform(0, 1, (1, 8, 8)).astype(np.float32)), tmp_path / "mask.mat")
    return tmp_path


def test_degrade_negative_seed(small):
    _usage_error(runner.invoke(app, ["degrade", str(small / "c.h5"), str(small / "o.h5"), "-d",
                                     "noise", "--seed", "-1"]), "--seed")
    assert not (small / "o.h5").exists()
    with pytest.raises(OptionError, match="seed"):
        parse_degradation("noise").apply(np.zeros((2, 4, 4), np.float32), seed=-1)


@pytest.mark.parametrize("extra, msg", [
    (["--seed", "-1", "--shot-noise", "10"], "--seed"), (["--shot-noise", "-1"], "--shot-noise"),
    (["--shot-noise", "nan"], "--shot-noise"), (["--step", "0"], "--step"),
    (["--crop", "-2"], "--crop"),
])
def test_simulate_cassi_option_values(small, extra, msg):
    _usage_error(runner.invoke(app, ["simulate-cassi", str(small / "c.h5"), "--mask",
                                     str(small / "mask.mat"), "-o", str(small / "m.mat")] + extra),
                 msg)
    assert not (small / "m.mat").exists()


def test_simulate_cassi_still_runs(small):
    r = runner.invoke(app, ["simulate-cassi", str(small / "c.h5"), "--mask",
                            str(small / "mask.mat"), "-o", str(small / "m.mat"),
                            "--shot-noise", "100", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert read_cube(small / "m.mat").shape == (1, 8, 8 + 2 * 3)


# ------------------------------------------------------------------ names
def test_degradation_name_hints():
    for bad, hint in [("nosie", "did you mean 'noise'?"),
                      ("motion_blur", "did you mean 'motion-blur'?"),
                      ("blur+inpant", "did you mean 'inpaint'?")]:
        with pytest.raises(OptionError, match="unknown degradation") as e:
            parse_degradation(bad)
        assert hint in str(e.value) and "valid: noise" in str(e.value)
    with pytest.raises(OptionError, match="cannot be combined"):
        parse_degradation("auto+noise")
    with pytest.raises(OptionError, match="cannot be combined"):
        parse_degradation("noise+generic")


def test_degrade_cli_name_hint(small):
    _usage_error(runner.invoke(app, ["degrade", str(small / "c.h5"), str(small / "o.h5"), "-d",
                                     "motion_blur"]), "did you mean 'motion-blur'?")


def test_models_unknown_task():
    _usage_error(runner.invoke(app, ["models", "--task", "foo"]), "unknown task 'foo'",
                 "cassi", "restore", "rgb2hsi")
    r = runner.invoke(app, ["models", "--task", "cassi", "--json"])
    assert r.exit_code == 0 and {m["task"] for m in json.loads(r.stdout)} == {"cassi"}
