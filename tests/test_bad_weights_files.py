"""Weights files that are not usable checkpoints give a typed one-line error (exit 1),
never an "internal error": a config the model cannot take, a torch file without a state
dict; and rgb2hsi checks --device even for the baseline."""
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hsirestore.cli import app
from hsirestore.errors import ModelError
from hsirestore.io import Cube, write_cube
from hsirestore.registry import build_model
from hsirestore.weights import load_state_dict, save_state_dict

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def test_build_model_config_errors_are_model_errors():
    with pytest.raises(ModelError, match="cannot build s2former-tiny"):
        build_model("s2former-tiny", embed_dim=7)  # not a multiple of the head size
    with pytest.raises(ModelError, match="cannot build hsivar-tiny"):
        build_model("hsivar-tiny", no_such_option=1)


@pytest.mark.parametrize("obj", [{"epoch": 3}, [torch.zeros(2)], {}])
def test_torch_files_without_a_state_dict(tmp_path, obj):
    path = tmp_path / "w.pt"
    torch.save(obj, path)
    with pytest.raises(ModelError, match="holds no state dict"):
        load_state_dict(path)


def _one_line(r, code):
    assert r.exit_code == code, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hsirestore: error: ") and "internal error" not in err[0]
    return err[0]


def test_cli_bad_weights_files(tmp_path):
    rng = np.random.default_rng(0)
    write_cube(Cube(rng.random((31, 16, 16)).astype(np.float32)), tmp_path / "c.h5")
    torch.save({"epoch": 3}, tmp_path / "meta_only.pt")
    model = build_model("hsivar-tiny")
    from hsirestore.registry import get_spec

    bad_cfg = {**get_spec("hsivar-tiny").config, "scales": [2, 1]}  # scales must increase
    save_state_dict(model.state_dict(), tmp_path / "bad_cfg.safetensors",
                    metadata={"model": "hsivar-tiny", "config": bad_cfg})
    for w, needle in (("meta_only.pt", "holds no state dict"), ("bad_cfg.safetensors", "hsivar-tiny")):
        r = runner.invoke(app, ["denoise", str(tmp_path / "c.h5"), "-o", str(tmp_path / f"o_{w}.h5"),
                                "--model", "hsivar-tiny", "--weights", str(tmp_path / w),
                                "-d", "noise", "--device", "cpu"])
        assert needle in _one_line(r, 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_rgb2hsi_checks_the_device_for_the_baseline_too(tmp_path):
    import imagecodecs

    png = tmp_path / "p.png"
    png.write_bytes(imagecodecs.png_encode(np.full((8, 8, 3), 128, np.uint8)))
    r = runner.invoke(app, ["rgb2hsi", str(png), "-o", str(tmp_path / "o.h5"), "--method", "poly",
                            "--device", "cuda:7"])
    assert "CUDA is not available" in _one_line(r, 2)
    assert not (tmp_path / "o.h5").exists()


def test_model_option_replaced_by_the_preset_the_weights_record(tmp_path, hsivar_tiny_weights):
    """--model names one preset, the file records another: the file's is built (its tensors
    only fit that one), with a one-line warning; no warning when --model is left out."""
    rng = np.random.default_rng(0)
    write_cube(Cube(rng.random((31, 16, 16)).astype(np.float32)), tmp_path / "c.h5")
    base = ["denoise", str(tmp_path / "c.h5"), "--weights", str(hsivar_tiny_weights), "-d", "noise",
            "--device", "cpu"]
    r = runner.invoke(app, base + ["-o", str(tmp_path / "a.h5"), "--model", "hsivar-compact"])
    assert r.exit_code == 0, r.output
    assert "built as hsivar-tiny, not as --model hsivar-compact" in r.stderr
    assert '"model": "hsivar-tiny' in r.stdout
    r = runner.invoke(app, base + ["-o", str(tmp_path / "b.h5")])
    assert r.exit_code == 0 and "warning" not in r.stderr
