"""CLI: denoise/restore (single, batch, errors, missing weights) and train hsivar(-export)."""
import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.io import read_cube, write_cube
from hsirestore.io.cube import Cube

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def _cube(bands=31, h=20, w=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 0.9, (bands, h, w)).astype(np.float32) * 4000
    return Cube(np.round(x), wavelengths=np.linspace(400, 1000, bands), source_dtype="uint16")


def _lines(out):
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_help_lists_degradations_and_units_and_alias():
    for name in ("denoise", "restore"):
        r = runner.invoke(app, [name, "--help"], terminal_width=200)
        assert r.exit_code == 0
        text = " ".join(r.stdout.split())
        assert "band-missing" in text and "motion-blur" in text and "1/255" in text


def test_single_file_keeps_shape_dtype_and_refuses_overwrite(tmp_path, hsivar_tiny_weights):
    src = tmp_path / "in.h5"
    write_cube(_cube(40), src, dtype="uint16")
    dst = tmp_path / "out.h5"
    args = ["denoise", str(src), "-o", str(dst), "--model", "hsivar-tiny", "--weights",
            str(hsivar_tiny_weights), "--tile", "16", "--overlap", "4", "--preview"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    rec = _lines(r.stdout)[0]
    assert rec["status"] == "ok" and rec["shape"] == [40, 20, 24]
    assert rec["degradation"] in ("noise", "niid-noise", "generic")
    out = read_cube(dst)
    assert out.shape == (40, 20, 24) and out.source_dtype == "uint16"
    np.testing.assert_allclose(out.wavelengths, np.linspace(400, 1000, 40))
    assert (tmp_path / "out_preview.png").exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(app, args[:-1] + ["--degradation", "sharpen", "--force"])
    assert r.exit_code == 2 and "unknown degradation" in r.stderr


def test_batch_folder_skips_existing_and_reports_errors(tmp_path, hsivar_tiny_weights):
    d = tmp_path / "in"
    d.mkdir()
    write_cube(_cube(31, seed=1), d / "a.h5", dtype="uint16")
    write_cube(_cube(33, seed=2), d / "b.tif", dtype="uint16")
    write_cube(_cube(4, seed=3), d / "c.h5", dtype="uint16")  # too few bands
    (d / "d.mat").write_bytes(b"not a mat file")
    out = tmp_path / "out"
    summary = tmp_path / "summary.jsonl"
    args = ["restore", str(d), "-o", str(out), "--model", "hsivar-tiny", "--weights",
            str(hsivar_tiny_weights), "--degradation", "blur+noise", "--tile", "0",
            "--summary", str(summary)]
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    recs = {rec["input"].split("/")[-1]: rec for rec in _lines(r.stdout)}
    assert [recs[k]["status"] for k in ("a.h5", "b.tif", "c.h5", "d.mat")] == ["ok", "ok", "error", "error"]
    assert "at least 8 bands" in recs["c.h5"]["message"]
    assert (out / "a_restored.h5").exists() and read_cube(out / "b_restored.tif").shape == (33, 20, 24)
    assert "2 of 4 inputs failed" in r.stderr
    r = runner.invoke(app, args)
    recs = {rec["input"].split("/")[-1]: rec["status"] for rec in _lines(r.stdout)}
    assert recs["a.h5"] == "skipped" and recs["b.tif"] == "skipped"
    assert len(summary.read_text().splitlines()) == 8


@pytest.mark.parametrize("suffix", [".hdr", ".tif", ".h5"])
def test_stream_matches_in_memory(tmp_path, hsivar_tiny_weights, suffix):
    src = tmp_path / f"in{suffix}"
    write_cube(_cube(36), src, dtype="uint16")
    common = ["--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights), "--tile", "16",
              "--overlap", "4", "--degradation", "noise"]
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    r = runner.invoke(app, ["denoise", str(src), "-o", str(a)] + common)
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["denoise", str(src), "-o", str(b), "--stream"] + common)
    assert r.exit_code == 0, r.stderr
    ca, cb = read_cube(a), read_cube(b)
    assert cb.source_dtype == "uint16" and cb.shape == (36, 20, 24)
    np.testing.assert_allclose(ca.data, cb.data, atol=1.0)


def test_stream_hdf5_reads_and_writes_windows(tmp_path, hsivar_tiny_weights, monkeypatch):
    # CAVE-like input: uint16 counts with a scale attribute in a group, a stored valid mask
    c = _cube(36)
    src = tmp_path / "scene.h5"
    with h5py.File(src, "w") as f:
        g = f.create_group("scene")
        g["cube"] = c.data.astype(np.uint16)
        g["cube"].attrs["scale"] = 1 / 4095
        g["cube"].attrs["layout"] = "bands-first"  # 36 bands > 20 rows: not detectable
        g["wavelength"] = c.wavelengths
        valid = np.ones((20, 24), np.uint8)
        valid[3, 5] = 0
        g["valid"] = valid
    common = ["--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights), "--tile", "16",
              "--overlap", "4", "--degradation", "noise"]
    a = tmp_path / "a.h5"
    r = runner.invoke(app, ["denoise", str(src), "-o", str(a)] + common)
    assert r.exit_code == 0, r.stderr

    import hsirestore.io.hdf5 as hdf5

    def whole_read(*args, **kw):
        raise AssertionError("--stream loaded the whole HDF5 cube")

    monkeypatch.setattr(hdf5, "read_hdf5", whole_read)
    monkeypatch.setattr(hdf5, "write_hdf5", whole_read)
    b = str(tmp_path / "b.h5") + ":/out/restored"
    r = runner.invoke(app, ["denoise", str(src), "-o", b, "--stream"] + common)
    assert r.exit_code == 0, r.stderr
    assert _lines(r.stdout)[0]["status"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5", "scene.h5"]
    r = runner.invoke(app, ["denoise", str(src), "-o", b, "--stream"] + common)
    assert r.exit_code == 1 and "exists" in r.stderr
    monkeypatch.undo()
    ca, cb = read_cube(a), read_cube(b)
    assert cb.source_dtype == "float32" and cb.shape == (36, 20, 24)
    np.testing.assert_allclose(cb.wavelengths, c.wavelengths)
    assert cb.valid is not None and not cb.valid[3, 5] and cb.valid.sum() == 20 * 24 - 1
    np.testing.assert_allclose(ca.data, cb.data, atol=1e-3)


def test_scaled_integer_source_is_written_as_float(tmp_path, hsivar_tiny_weights):
    # a reader that applied a scale factor (values in [0, 1]) but reports uint16 as source dtype
    src = tmp_path / "scaled.h5"
    c = _cube(31)
    write_cube(Cube(c.data / 4000, source_dtype="float32"), src)
    from hsirestore.io import output_dtype

    def meta(dt):
        return Cube(c.data[:, :2, :2], source_dtype=dt)

    assert output_dtype(meta("uint16"), c.data / 4000, "o.h5") is None
    assert output_dtype(meta("uint16"), c.data, "o.h5") == "uint16"
    assert output_dtype(meta("float32"), c.data, "o.h5") is None
    r = runner.invoke(app, ["denoise", str(src), "--model", "hsivar-tiny", "--weights",
                            str(hsivar_tiny_weights), "--tile", "0", "--threads", "1"])
    assert r.exit_code == 0, r.stderr
    out = read_cube(tmp_path / "scaled_restored.h5")
    assert out.data.max() < 50 and len(np.unique(out.data)) > 10


def test_missing_shipped_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path))
    src = tmp_path / "in.h5"
    write_cube(_cube(31), src, dtype="uint16")
    r = runner.invoke(app, ["denoise", str(src), "-o", str(tmp_path / "o.h5")])
    assert r.exit_code == 1
    assert "no shipped weights 'hsivar-compact.safetensors'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _fake_cave(root, n, rows=32):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "cave" / split).mkdir(parents=True)
        for i in range(n):
            with h5py.File(root / "cave" / split / f"s{i}.h5", "w") as f:
                yy, xx = np.mgrid[0:rows, 0:rows] / rows
                cube = np.stack([0.4 + 0.3 * np.sin(2 * np.pi * (xx + yy * (i + 1)) + b / 9)
                                 for b in range(31)]) + 0.02 * rng.random((31, rows, rows))
                ds = f.create_dataset("cube", data=np.round(cube * 4095).astype(np.uint16))
                ds.attrs["scale"] = 1 / 4095
                f.create_dataset("wavelength_nm", data=np.arange(400, 701, 10.0))


def test_train_cli_two_stages_export_and_use(tmp_path):
    _fake_cave(tmp_path / "data", 2)
    run = tmp_path / "run"
    base = ["train", "hsivar", "--preset", "hsivar-tiny", "--patch", "16", "--batch-size", "2",
            "--data", str(tmp_path / "data"), "--out", str(run), "--threads", "1", "--log-every", "2"]
    r = runner.invoke(app, base + ["--stage", "3", "--steps", "2"])
    assert r.exit_code == 2 and "--stage must be 1 or 2" in r.stderr
    r = runner.invoke(app, base + ["--stage", "1", "--steps", "4", "--val-every", "4"])
    assert r.exit_code == 0, r.stderr
    assert '"recon_psnr"' in r.stdout and (run / "stage1" / "last.pt").exists()
    r = runner.invoke(app, base + ["--stage", "2", "--steps", "2", "--val-every", "0"])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, base + ["--stage", "2", "--steps", "4", "--val-every", "0", "--resume"])
    assert r.exit_code == 0 and "at step 2" in r.stdout
    w = tmp_path / "w" / "hsivar-tiny.safetensors"
    w.parent.mkdir()
    r = runner.invoke(app, ["train", "hsivar-export", str(run / "stage2" / "last.pt"), "-o", str(w)])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 4
    assert "hsivar-tiny.safetensors" in json.loads((w.parent / "manifest.json").read_text())["files"]
    src = tmp_path / "in.h5"
    write_cube(_cube(31), src, dtype="uint16")
    r = runner.invoke(app, ["denoise", str(src), "--model", "hsivar-tiny", "--weights", str(w),
                            "--tile", "0"])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "in_restored.h5").exists()


def test_ensemble_option(tmp_path, hsivar_tiny_weights):
    src = tmp_path / "in.h5"
    write_cube(_cube(31), src, dtype="uint16")
    base = ["denoise", str(src), "--model", "hsivar-tiny", "--weights", str(hsivar_tiny_weights),
            "--degradation", "noise", "--tile", "0"]
    r = runner.invoke(app, base + ["-o", str(tmp_path / "e.h5"), "--ensemble"])
    assert r.exit_code == 0, r.stderr
    assert "flip ensemble" in _lines(r.stdout)[0]["model"]
    r = runner.invoke(app, base + ["-o", str(tmp_path / "p.h5")])
    assert "flip ensemble" not in _lines(r.stdout)[0]["model"]
    assert read_cube(tmp_path / "e.h5").shape == read_cube(tmp_path / "p.h5").shape == (31, 20, 24)
