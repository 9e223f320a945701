"""Option handling of benchmarks/cassi_val.py, rgb2hsi_val.py and stream_memory.py.

Everything runs on generated stand-ins for ../shared/data (tiny cubes, masks, camera
responses), so nothing here needs the shared data folder, and each test takes seconds."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(err: str, prefix: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), lines
    return lines[0]


# ----------------------------------------------------------------------------- cassi_val
@pytest.fixture
def cassi_val(load_benchmark):
    import torch

    threads = torch.get_num_threads()
    yield load_benchmark("cassi_val")
    torch.set_num_threads(threads)  # the script sets the process-wide thread count


@pytest.mark.parametrize("argv, says", [
    (["--limit", "-1"], "--limit must be >= 0"),
    (["--threads", "0"], "--threads >= 1"),
    (["--methods", ","], "names no method"),
    (["--methods", "nope"], "unknown model 'nope'"),
    (["--methods", "mcga-compact"], "not a CASSI decoder"),
    (["--iters", "0"], "iterations must be >= 1"),
    (["--weights", "missing.safetensors"], "not found"),
])
def test_cassi_val_option_mistakes(cassi_val, argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "nodata"))
    monkeypatch.chdir(tmp_path)
    assert cassi_val.main(argv) == 2
    assert says in _one_line_error(capsys.readouterr().err, "cassi_val: error:")


def test_cassi_val_default_threads_and_missing_weights(cassi_val, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "nodata"))
    assert cassi_val.main(["--methods", "gap-tv"]) == 0
    assert torch.get_num_threads() == 2  # the README's figures were taken with 2 threads
    assert "data not found" in capsys.readouterr().out
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path / "noweights"))
    assert cassi_val.main(["--methods", "s2former-unfolded,gap-tv", "--threads", "1"]) == 0
    assert "skipping s2former-unfolded: no shipped weights" in capsys.readouterr().out


def test_cassi_val_labels_are_model_names(cassi_val, tmp_path, monkeypatch, capsys):
    import h5py
    import scipy.io as sio

    data = tmp_path / "data"
    (data / "cave" / "val").mkdir(parents=True)
    (data / "cassi").mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(data / "cave" / "val" / "s0.h5", "w") as f:
        ds = f.create_dataset("cube", data=rng.integers(0, 4096, (31, 256, 256), dtype=np.uint16))
        ds.attrs["scale"] = 1 / 4095
        f["wavelength_nm"] = np.arange(400, 701, 10)
    sio.savemat(data / "cassi" / "mask_256.mat", {"mask": rng.random((256, 256)).astype(np.float32)})
    monkeypatch.setenv("HSIRESTORE_DATA", str(data))
    out_json = tmp_path / "r.json"
    # "s2former" is the --model it resolves to; naming that model again decodes it once
    rc = cassi_val.main(["--model", "s2former-unfolded", "--methods", "s2former,s2former-unfolded",
                         "--limit", "1", "--threads", "1", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "s2former-unfolded is s2former-unfolded again; decoded once" in out
    assert "1 CPU thread(s)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("s0 ")]
    assert [r[1] for r in rows] == ["s2former-unfolded"]
    res = json.loads(out_json.read_text())
    assert res["cpu_threads"] == 1 and list(res["mean"]) == ["s2former-unfolded"]


# ----------------------------------------------------------------------------- rgb2hsi_val
def _camera_csv(path: Path, shift: float) -> Path:
    wl = np.arange(400, 701, 10)
    cols = [np.exp(-0.5 * ((wl - (c + shift)) / 35.0) ** 2) for c in (600, 540, 460)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("wavelength,r,g,b\n" + "".join(
        f"{w},{r:.6f},{g:.6f},{b:.6f}\n" for w, r, g, b in zip(wl, *cols)))
    return path


@pytest.fixture
def rgb_data(tmp_path, monkeypatch):
    """A 31x32x32 CAVE-like val scene, a stand-in NTIRE response, and a weights folder with
    only the shipped root-polynomial baseline (so MCGA is skipped: no shipped file)."""
    import h5py

    data = tmp_path / "data"
    (data / "cave" / "val").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(data / "cave" / "val" / "s0.h5", "w") as f:
        ds = f.create_dataset("cube", data=rng.integers(1, 4096, (31, 32, 32), dtype=np.uint16))
        ds.attrs["scale"] = 1 / 4095
        f["wavelength_nm"] = np.arange(400, 701, 10)
    _camera_csv(data / "camera" / "ntire2022_rgb_qe.csv", 0.0)
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("manifest.json", "rgb2hsi-poly.npz"):
        if not (ROOT / "weights" / name).is_file():
            pytest.skip("the shipped root-polynomial baseline is not in weights/")
        shutil.copy(ROOT / "weights" / name, weights / name)
    monkeypatch.setenv("HSIRESTORE_DATA", str(data))
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(weights))
    return data


def test_rgb2hsi_val_missing_heldout_camera_skips_its_rows(load_benchmark, rgb_data, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    assert load_benchmark("rgb2hsi_val").main(["--no-tta", "--json", str(out_json)]) == 0
    cap = capsys.readouterr()
    assert cap.out.count("heldout-Nokia_N900 rows skipped") == 1 and "Nokia_N900.csv not found" in cap.out
    assert "MCGA skipped: no shipped weights" in cap.out
    assert "one-off --camera" not in cap.out
    res = json.loads(out_json.read_text())
    assert set(res) == {"poly", "poly+cons"} and set(res["poly"]) == {"ntire", "dark"}


def test_rgb2hsi_val_camera_fit_is_not_timed(load_benchmark, rgb_data, tmp_path, capsys):
    _camera_csv(rgb_data / "camera" / "camspec" / "Nokia_N900.csv", 15.0)
    out_json = tmp_path / "r.json"
    assert load_benchmark("rgb2hsi_val").main(["--no-tta", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out.splitlines()
    fit = [i for i, line in enumerate(out) if line.startswith("one-off --camera conversion fit")]
    table = [i for i, line in enumerate(out) if line.startswith("method ")]
    assert len(fit) == 1 and "not included in s/MP" in out[fit[0]] and fit[0] < table[0]
    res = json.loads(out_json.read_text())
    assert set(res["poly"]) == {"ntire", "dark", "heldout-Nokia_N900", "heldout-Nokia_N900+camera"}


@pytest.mark.parametrize("argv, says", [
    (["--scenes", "-1"], "--scenes"),
    (["--threads", "-1"], "--threads"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--device", "nosuch"], "unknown device"),
])
def test_rgb2hsi_val_option_mistakes(load_benchmark, argv, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "nodata"))
    assert load_benchmark("rgb2hsi_val").main(argv) == 2
    assert says in _one_line_error(capsys.readouterr().err, "rgb2hsi_val: error:")


# ----------------------------------------------------------------------------- stream_memory
def test_stream_memory_takes_the_shape_from_an_existing_file(load_benchmark, tmp_path, capsys):
    sm = load_benchmark("stream_memory")
    cube = tmp_path / "c.img"
    sm.create_input(cube, 5, 70, 50)  # 5 bands x 70 rows x 50 cols; defaults are 200x2048x2048
    for extra in ([], ["--local-io"]):
        rc = sm.main(["--path", str(cube), "--rows", "64", "--tile", "32", "--overlap", "4",
                      "--workdir", str(tmp_path), *extra])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "--rows 64 ignored" in out and "reusing" in out and "(5, 70, 50)" in out
        assert "OK, output == input" in out


def test_stream_memory_local_io_needs_float32_bsq(load_benchmark, tmp_path, capsys):
    sm = load_benchmark("stream_memory")
    cube = tmp_path / "u.img"
    np.zeros((3, 8, 8), "<u2").tofile(cube)
    cube.with_suffix(".hdr").write_text("ENVI\nsamples = 8\nlines = 8\nbands = 3\nheader offset = 0\n"
                                        "data type = 12\ninterleave = bsq\nbyte order = 0\n")
    assert sm.main(["--path", str(cube), "--local-io", "--workdir", str(tmp_path)]) == 2
    assert "--local-io needs float32" in _one_line_error(capsys.readouterr().err, "stream_memory: error:")


@pytest.mark.parametrize("argv", [["--rows", "-1"], ["--bands", "0"], ["--samples", "-2"],
                                  ["--tile", "0"], ["--path", "README.md"]])
def test_stream_memory_bad_options(load_benchmark, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert load_benchmark("stream_memory").main([*argv, "--workdir", str(tmp_path)]) == 2
    _one_line_error(capsys.readouterr().err, "stream_memory: error:")
