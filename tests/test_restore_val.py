"""benchmarks/restore_val.py: task table, BM4D pre-fills, and a tiny end-to-end run."""
import json
import math
import sys

import numpy as np
import pytest

from hsirestore.physics.degradations import PARAMS, parse_degradation


@pytest.fixture(scope="module")
def rv(load_benchmark):
    return load_benchmark("restore_val")


def test_task_table_parses_with_issue_values(rv):
    steps = {t: [(s.name, {**PARAMS[s.name], **s.params}) for s in parse_degradation(spec).steps]
             for t, spec in rv.TASKS.items()}
    assert steps["noise"] == [("noise", {"sigma": 30.0})]
    (b, bp), (n, np_) = steps["blur+noise"]
    assert (b, bp["sigma"], n, np_["sigma"]) == ("blur", 1.6, "noise", 15.0)
    assert steps["stripes"][0][0] == "stripes"
    assert steps["band-missing"] == [("band-missing", {"ratio": 0.3})]
    assert steps["inpaint"] == [("inpaint", {"ratio": 0.7})]
    assert rv.stripes_sigma(rv.TASKS["stripes"]) * 255 == pytest.approx(math.sqrt(0.1 * 0.25**2 / 3) * 255)


def test_fills_are_exact_on_linear_data(rv):
    b, h, w = 10, 12, 12
    bands = np.arange(b, dtype=np.float32)[:, None, None]
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (0.01 * bands + 0.02 * rr[None] + 0.03 * cc[None]).astype(np.float32)
    mb = np.zeros(b, bool)
    mb[[3, 4, 7]] = True
    y = np.where(mb[:, None, None], 0, x)
    np.testing.assert_allclose(rv.fill_bands(y, mb), x, atol=1e-6)
    mp = np.random.default_rng(0).random((h, w)) < 0.5
    mp[[0, 0, -1, -1], [0, -1, 0, -1]] = False  # corners observed: the hull covers everything
    y = np.where(mp[None], 0, x)
    np.testing.assert_allclose(rv.fill_pixels(y, mp), x, atol=1e-5)


def test_end_to_end_tiny(rv, tmp_path, monkeypatch, capsys):
    import h5py

    from hsirestore.registry import build_model, get_spec
    from hsirestore.weights import save_state_dict

    val = tmp_path / "data" / "cave" / "val"
    val.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(val / "scene.h5", "w") as f:
        ds = f.create_dataset("cube", data=rng.integers(0, 4096, (31, 40, 40), dtype=np.uint16))
        ds.attrs["scale"] = 1.0 / 4095.0
        f["wavelength_nm"] = np.arange(400, 701, 10, dtype=np.float64)
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "data"))
    w = tmp_path / "tiny.safetensors"
    save_state_dict(build_model("hsivar-tiny").state_dict(), w,
                    metadata={"model": "hsivar-tiny", "config": get_spec("hsivar-tiny").config})
    monkeypatch.setitem(sys.modules, "bm4d", None)  # the optional package absent
    out = tmp_path / "r.json"
    assert rv.main(["--tasks", "noise,band-missing", "--crop", "32", "--model", "hsivar-tiny",
                    "--weights", str(w), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "BM4D skipped: the bm4d package is not installed" in text
    res = json.loads(out.read_text())
    assert {(r["task"], r["method"]) for r in res["rows"]} == {
        ("noise", "input"), ("noise", "hsivar"), ("band-missing", "input"), ("band-missing", "hsivar")}
    assert res["mean"]["band-missing"]["input"]["mpsnr"] <= rv.PSNR_CAP
    assert "missing_bands_only" in res["mean"]["band-missing"]["hsivar"]
    # no weights for the default preset: one line, no model rows, still a table
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path / "none"))
    assert rv.main(["--tasks", "noise", "--crop", "32", "--methods", "hsivar"]) == 0
    text = capsys.readouterr().out
    assert "HSI-VAR skipped" in text and "noise" in text.split("mean over")[1]


@pytest.mark.parametrize("opts, says", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "mcga-compact"], "not a restoration model"),
    (["--tile", "5"], "--tile must be 0"),
    (["--tile", "-3"], "--tile must be 0"),
    (["--device", "nosuch"], "unknown device"),
    (["--weights", "missing.safetensors"], "not found"),
    (["--scenes", "-1"], "--scenes"),
    (["--scenes", "0"], "--scenes"),
])
def test_option_mistakes_are_errors_not_skips(rv, opts, says, tmp_path, monkeypatch, capsys):
    """Model/option mistakes: one line on stderr, exit 2, no "skipped" (data not needed)."""
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "nodata"))
    monkeypatch.chdir(tmp_path)
    rc = rv.main(["--scenes", "1", "--crop", "32", "--methods", "hsivar", "--tasks", "noise", *opts])
    cap = capsys.readouterr()
    assert rc == 2
    assert "skipped" not in cap.out
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("restore_val: error:") and says in err[0]


def test_cuda_without_gpu_is_an_error(rv, tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "nodata"))
    assert rv.main(["--methods", "hsivar", "--tasks", "noise", "--device", "cuda"]) == 2
    cap = capsys.readouterr()
    assert "CUDA is not available" in cap.err and "skipped" not in cap.out


def test_missing_shipped_weights_is_a_skip(rv, tmp_path, monkeypatch):
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path / "none"))
    assert "no shipped weights 'hsivar-compact.safetensors'" in rv.missing_shipped_weights("hsivar-compact")
    # hsivar-tiny has no shipped file at all: an option mistake for the Restorer, not a skip
    assert rv.missing_shipped_weights("hsivar-tiny") is None
