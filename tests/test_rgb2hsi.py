import json

import numpy as np
import pytest
import torch

from hsirestore.errors import FormatError, InvalidValueError, ModelError, OptionError, ShapeError
from hsirestore.inference.camera import fit_camera_matrix, spectral_library
from hsirestore.inference.rgb2hsi import WAVELENGTHS, RgbToHsi, srgb_to_linear
from hsirestore.io.cube import Cube


def _rgb(h=24, w=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 0.9, (3, h, w)).astype(np.float32)


def test_poly_predictor_shapes_and_wavelengths():
    pred = RgbToHsi(method="poly")
    out = pred.predict(Cube(_rgb()))
    assert out.shape == (31, 24, 40)
    np.testing.assert_array_equal(out.wavelengths, np.arange(400, 701, 10))
    assert out.wavelength_units == "nm" and np.isfinite(out.data).all()
    lin = RgbToHsi(method="poly", srgb=True).predict(_rgb())
    assert lin.data.mean() < out.data.mean()  # linearised sRGB is darker


def test_nan_pixels_marked_invalid():
    x = _rgb()
    x[:, 3, 4] = np.nan
    out = RgbToHsi(method="poly").predict(x)
    assert out.valid is not None and not out.valid[3, 4] and out.valid.sum() == x[0].size - 1


def test_bad_inputs_raise_typed_errors(tmp_path, monkeypatch):
    pred = RgbToHsi(method="poly")
    with pytest.raises(ShapeError):
        pred.predict(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(InvalidValueError):
        pred.predict(np.full((3, 8, 8), 255.0, np.float32))
    with pytest.raises(OptionError):
        RgbToHsi(method="poly", tta=True)
    with pytest.raises(OptionError):
        RgbToHsi(method="nope")
    monkeypatch.setenv("HSIRESTORE_WEIGHTS", str(tmp_path))  # weights not installed
    with pytest.raises(ModelError, match="mcga-compact.safetensors"):
        RgbToHsi(method="mcga", model_name="mcga-compact")
    with pytest.raises(ModelError, match="unknown model"):
        RgbToHsi(method="mcga", model_name="mcga-huge")


def test_srgb_curve_and_camera_matrix():
    assert srgb_to_linear(np.array([0.0, 1.0]))[1] == pytest.approx(1.0)
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.214, abs=1e-3)
    lib = spectral_library()
    assert lib.shape[1] == 31 and len(lib) > 100
    # the fit makes the reconstruction re-render to the camera's RGB: with a linear
    # reconstruction B (31 x 3) that is M = (R_C B)^-1; here R_C B = diag(2, 0.5, 1)
    from hsirestore.inference.camera import render_spectra

    wl = WAVELENGTHS
    resp = np.stack([np.exp(-((wl - c) / 40) ** 2) for c in (600, 540, 460)])
    render = render_spectra(np.eye(31), wl, wl, resp)
    b = np.linalg.pinv(render) @ np.diag([2.0, 0.5, 1.0])
    m = fit_camera_matrix(wl, resp, reconstruct=lambda rgb: b @ rgb)
    np.testing.assert_allclose(m, np.diag([0.5, 2.0, 1.0]), atol=1e-5)


@pytest.fixture
def tiny_weights(tmp_path):
    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    torch.manual_seed(0)
    model = build_model("mcga-tiny")
    with torch.no_grad():  # as if trained: open the zero-initialised residual outputs
        for n, p in model.ganet.named_parameters():
            if p.abs().sum() == 0 and n.endswith("weight"):
                p.normal_(0, 0.1)
    path = tmp_path / "tiny.safetensors"
    save_state_dict(model.state_dict(), path)
    return path


def test_mcga_predictor_tiled_and_tta_reproducible(tiny_weights):
    rgb = _rgb(32, 40)
    pred = RgbToHsi(model_name="mcga-tiny", weights=tiny_weights, device="cpu", tile=32, overlap=8)
    out = pred.predict(rgb)
    assert out.shape == (31, 32, 40) and np.isfinite(out.data).all()
    tta = RgbToHsi(model_name="mcga-tiny", weights=tiny_weights, device="cpu", tile=None,
                   tta=True, tta_steps=2, tta_lr=5e-2)
    before = {k: v.clone() for k, v in tta.model.state_dict().items()}
    a = tta.predict(rgb).data
    b = tta.predict(_rgb(32, 40, seed=5)).data  # another image in between
    c = tta.predict(rgb).data
    np.testing.assert_array_equal(a, c)
    for k, v in tta.model.state_dict().items():
        assert torch.equal(v, before[k])
    plain = RgbToHsi(model_name="mcga-tiny", weights=tiny_weights, device="cpu", tile=None)
    assert not np.array_equal(plain.predict(rgb).data, a)
    assert b.shape == a.shape


def test_tiny_training_learns_and_resumes(tmp_path):
    from hsirestore.training.mcga import SyntheticSpectra, TrainConfig, Trainer

    synth = SyntheticSpectra(seed=3)
    cubes = [synth.sample(32) for _ in range(3)]
    wl = WAVELENGTHS
    cams = [np.stack([np.exp(-((wl - c) / w) ** 2) for c in (600, 540, 460)]) for w in (40, 30)]
    cams = [(c / c[1].sum()).astype(np.float32) for c in cams]
    common = dict(preset="mcga-tiny", batch_size=4, patch=16, lr=3e-3, warmup=1, log_every=5,
                  ckpt_every=1000, restart_every=10, threads=1)
    r1 = Trainer(TrainConfig(stage=1, steps=40, **common), tmp_path, cubes=cubes,
                 synthetic=synth).run(echo=lambda s: None)
    losses = [json.loads(l)["loss"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    # resume continues from the checkpoint step
    r1b = Trainer(TrainConfig(stage=1, steps=45, **common), tmp_path, resume=True, cubes=cubes,
                  synthetic=synth).run(echo=lambda s: None)
    assert r1["step"] == 40 and r1b["step"] == 45
    from hsirestore.errors import OutputExistsError

    with pytest.raises(OutputExistsError):  # an existing run is never replaced without --resume
        Trainer(TrainConfig(stage=1, steps=5, **common), tmp_path, cubes=cubes, synthetic=synth)
    tr2 = Trainer(TrainConfig(stage=2, steps=40, p_camspec=0.5, **common), tmp_path, cubes=cubes,
                  synthetic=synth, cameras=(cams[0], [cams[1]]))
    moc = tr2.model.vq.moc(0).clone()
    r2 = tr2.run(echo=lambda s: None)
    assert torch.equal(tr2.model.vq.moc(0), moc)  # MoC frozen in stage 2
    assert r2["loss_last"] < r2["loss_first"]
    pred = RgbToHsi(model_name="mcga-tiny", weights=r2["weights"], device="cpu", tile=None)
    assert pred.predict(_rgb(16, 16)).shape == (31, 16, 16)
    # export: fp16 safetensors + manifest entry with sha256 and the given metrics
    from hsirestore.training.mcga import export_weights
    from hsirestore.weights import read_manifest, sha256_file

    out = tmp_path / "w" / "mcga-tiny.safetensors"
    out.parent.mkdir()
    with pytest.raises(OptionError):
        export_weights(tmp_path / "stage1.pt", out)
    entry = export_weights(tmp_path / "stage2.pt", out, metrics={"ntire": {"mrae": 0.5}})
    man = read_manifest(out.parent)["files"]["mcga-tiny.safetensors"]
    assert man["sha256"] == sha256_file(out) == entry["sha256"] and man["steps"] == 40
    assert man["val_metrics"]["ntire"]["mrae"] == 0.5 and man["dtype"] == "float16"
    a = RgbToHsi(model_name="mcga-tiny", weights=out, device="cpu", tile=None).predict(_rgb(16, 16))
    b = pred.predict(_rgb(16, 16))
    assert np.abs(a.data - b.data).max() < 1e-2  # fp16 export keeps the prediction


def _camera_csv(tmp_path):
    wl = np.arange(380, 751, 5)
    r, g, b = (np.exp(-((wl - c) / 45.0) ** 2) for c in (610, 545, 455))
    p = tmp_path / "cam.csv"
    lines = ["# synthetic camera", "Wavelength[nm],R,G1,G2,B"]
    lines += [f"{w},{x:.6f},{y:.6f},{y:.6f},{z:.6f}" for w, x, y, z in zip(wl, r, g, b)]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_consistency_projection_renders_back_to_the_input(tmp_path, monkeypatch):
    from hsirestore.inference.rgb2hsi import project_to_rgb
    from hsirestore.physics.rgb import load_camera_response, render_rgb, sample_response

    cam = _camera_csv(tmp_path)
    wl, resp = load_camera_response(cam)
    # --camera needs no NTIRE file (the mapping is fitted with the shipped baseline)
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "none"))
    rgb = _rgb() * 0.8
    rgb[:, 0, 0] = (1.0, 0.5, 0.2)  # saturated red channel: left as predicted
    plain = RgbToHsi(method="poly", camera=cam).predict(rgb).data
    pred = RgbToHsi(method="poly", camera=cam, consistency=True)
    assert "RGB consistency" in pred.describe()
    out = pred.predict(rgb).data
    assert (out >= 0).all()
    back = render_rgb(out, WAVELENGTHS, wl, resp, clip=False)
    inside = (out > 0).all(0)  # clipping to >= 0 may break exactness elsewhere
    inside[0, 0] = False
    assert inside.mean() > 0.2
    np.testing.assert_allclose(back[:, inside], rgb[:, inside], atol=1e-4)
    np.testing.assert_array_equal(out[:, 0, 0], plain[:, 0, 0])
    # the projection is the least-squares correction: it does not move consistent spectra
    r = sample_response(WAVELENGTHS, wl, resp)
    np.testing.assert_allclose(project_to_rgb(out, back, r), out, atol=1e-5)
    # without a camera the NTIRE response is needed; a missing file is a clear FormatError
    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "none"))
    with pytest.raises(FormatError, match="--consistency needs the camera response"):
        RgbToHsi(method="poly", consistency=True)


def test_stage2_fine_tuning_from_weights_with_consistency_loss(tmp_path):
    from hsirestore.registry import build_model
    from hsirestore.training.mcga import (SyntheticSpectra, TrainConfig, Trainer, project_batch,
                                          render_batch)
    from hsirestore.weights import save_state_dict

    synth = SyntheticSpectra(seed=4)
    cubes = [synth.sample(32) for _ in range(3)]
    wl = WAVELENGTHS
    cam = np.stack([np.exp(-((wl - c) / 40) ** 2) for c in (600, 540, 460)])
    cam = (cam / cam[1].sum()).astype(np.float32)
    # the projection is exact for unsaturated pixels and differentiable
    hsi = torch.from_numpy(np.stack(cubes[:2])) * 0.5
    resp = torch.from_numpy(np.stack([cam, cam]))
    rgb = render_batch(hsi, resp)
    out = torch.rand_like(hsi, requires_grad=True)
    proj = project_batch(out, rgb, resp)
    torch.testing.assert_close(render_batch(proj, resp), rgb, atol=1e-4, rtol=0)
    proj.sum().backward()
    assert out.grad is not None
    # fine-tune an exported model: GANet moves, the frozen stage 1 does not
    torch.manual_seed(0)
    model = build_model("mcga-tiny")
    w = tmp_path / "init.safetensors"
    save_state_dict(model.state_dict(), w, metadata={"model": "mcga-tiny", "steps": 25})
    common = dict(preset="mcga-tiny", batch_size=4, patch=16, lr=3e-3, warmup=1, log_every=5,
                  ckpt_every=1000, threads=1)
    tr = Trainer(TrainConfig(stage=2, steps=10, init_weights=str(w), w_consistency=1.0, w_mrae=0.5,
                             **common),
                 tmp_path / "ft", cubes=cubes, synthetic=synth, cameras=(cam, []))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    r = tr.run(echo=lambda s: None)
    after = tr.model.state_dict()
    assert r["step"] == 10 and np.isfinite(r["loss_last"])
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("vq."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("ganet."))
    # the exported steps count the steps behind the initial weights too
    from hsirestore.training.mcga import export_weights

    entry = export_weights(tmp_path / "ft" / "stage2.pt", tmp_path / "ft" / "mcga-tiny-ft.safetensors")
    assert entry["steps"] == 35 and entry["training"]["run_steps"] == 10
    assert entry["training"]["prior_steps"] == 25
    with pytest.raises(OptionError, match="--init-weights"):
        Trainer(TrainConfig(stage=1, steps=1, init_weights=str(w), **common), tmp_path / "x",
                cubes=cubes, synthetic=synth)
    with pytest.raises(OptionError, match="--w-mrae"):
        Trainer(TrainConfig(stage=2, steps=1, init_weights=str(w), w_mrae=-1.0, **common),
                tmp_path / "y", cubes=cubes, synthetic=synth)


def test_relative_error_loss_weighs_dark_pixels_more():
    from hsirestore.training.mcga import relative_error

    ref = torch.tensor([[[[0.5, 0.05]]]])
    # the same absolute error costs 10x / (ref + 0.01) more on the darker pixel
    dark = relative_error(ref + torch.tensor([[[[0.0, 0.02]]]]), ref)
    bright = relative_error(ref + torch.tensor([[[[0.02, 0.0]]]]), ref)
    assert float(dark) == pytest.approx(0.5 * 0.02 / 0.06, rel=1e-5)
    assert float(bright) == pytest.approx(0.5 * 0.02 / 0.51, rel=1e-5)
    assert float(relative_error(ref, ref)) == 0.0


def test_camera_cie_recovers_render_rgb_default_images(tmp_path, monkeypatch):
    """render-rgb's default camera (cie) fed to rgb2hsi --camera cie: the mapping makes the
    baseline's spectra far closer than reading the image as NTIRE-camera RGB (11 dB in a
    user's round trip), and it needs no data files."""
    from hsirestore.physics.rgb import render_rgb

    monkeypatch.setenv("HSIRESTORE_DATA", str(tmp_path / "none"))
    lib = spectral_library()[:96]  # ColorChecker-like reflectances
    cube = lib.T.reshape(31, 8, 12).astype(np.float32)
    rgb = render_rgb(cube, WAVELENGTHS, None, None)  # the built-in CIE response
    err = {}
    for cam in (None, "cie"):
        out = RgbToHsi(method="poly", camera=cam).predict(rgb).data
        err[cam] = float(np.mean(np.abs(out - cube)))
    assert err["cie"] < 0.6 * err[None]
    with pytest.raises(FormatError, match="file not found"):
        RgbToHsi(method="poly", camera=str(tmp_path / "nope.csv"))
    assert RgbToHsi(method="poly", camera="ntire").predict(rgb).data.shape == (31, 8, 12)
