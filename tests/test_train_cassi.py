import json

import h5py
import numpy as np
import scipy.io as sio
import torch

from hsirestore.training.cassi import CassiTrainConfig, normalised_input, simulate, train


def test_normalised_input_is_scale_free():
    x = torch.rand(2, 28, 16, 16)
    mask = torch.rand(2, 16, 16)
    y = simulate(x, mask, 28, 2)
    a, sa = normalised_input(y, mask, 28, 2)
    b, sb = normalised_input(5 * y, mask, 28, 2)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(sb, 5 * sa)


def test_train_resume_and_log(fake_cassi_data, tmp_path):
    fake_cassi_data(tmp_path / "data")
    cfg = CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "run"), steps=6,
                           batch_size=2, patch=16, log_every=2, val_every=0, aux_steps=2,
                           warmup=2)
    train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ck["step"] == 6
    cfg.steps = 8
    train(cfg, resume=True, data_dir=tmp_path / "data", log=lambda *_: None)
    ck2 = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ck2["step"] == 8
    lines = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "step" in l] == [2, 4, 6, 8]
    assert all(np.isfinite(l["loss"]) for l in lines)


def test_training_reduces_loss(fake_cassi_data, tmp_path):
    fake_cassi_data(tmp_path / "data")
    cfg = CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "run"), steps=40,
                           batch_size=2, patch=16, log_every=10, val_every=0,
                           mask_aware=False, lr=3e-3, warmup=5)
    train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)
    losses = [json.loads(l)["loss"] for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_export_writes_manifest_and_loads(fake_cassi_data, tmp_path, monkeypatch):
    import hsirestore.training.cassi as tc
    from hsirestore.registry import build_model

    monkeypatch.setattr(tc, "shared_data_dir", lambda: tmp_path / "absent")  # skip validation
    from hsirestore.training.cassi import export_weights
    from hsirestore.weights import load_into, load_state_dict, read_manifest, sha256_file

    fake_cassi_data(tmp_path / "data")
    cfg = CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "run"), steps=2,
                           batch_size=2, patch=16, val_every=0, aux_steps=1, warmup=1)
    train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)
    out = tmp_path / "w" / "tiny.safetensors"
    out.parent.mkdir()
    entry = export_weights(tmp_path / "run" / "last.pt", out)
    man = read_manifest(out.parent)["files"]["tiny.safetensors"]
    assert man["sha256"] == sha256_file(out) == entry["sha256"]
    assert man["steps"] == 2 and man["dtype"] == "float16" and man["model"] == "s2former-tiny"
    state, meta = load_state_dict(out, expected_sha256=man["sha256"])
    assert not any(k.startswith("aux.") for k in state)
    load_into(build_model("s2former-tiny"), state, strict=True)


def test_continued_runs_record_cumulative_steps(fake_cassi_data, tmp_path, monkeypatch):
    """Export -> continue from the exported file -> export: the manifest counts all steps."""
    import hsirestore.training.cassi as tc
    from hsirestore.training.cassi import export_weights
    from hsirestore.weights import read_manifest, recorded_steps

    monkeypatch.setattr(tc, "shared_data_dir", lambda: tmp_path / "absent")  # skip validation
    fake_cassi_data(tmp_path / "data")
    kw = dict(preset="s2former-tiny", batch_size=1, patch=16, val_every=0, aux_steps=1, warmup=1)
    train(CassiTrainConfig(out=str(tmp_path / "a"), steps=3, **kw), data_dir=tmp_path / "data",
          log=lambda *_: None)
    out = tmp_path / "w" / "tiny.safetensors"
    out.parent.mkdir()
    export_weights(tmp_path / "a" / "last.pt", out)
    assert recorded_steps(out) == 3 and recorded_steps(tmp_path / "a" / "last.pt") == 3
    train(CassiTrainConfig(out=str(tmp_path / "b"), steps=2, init_weights=str(out), **kw),
          data_dir=tmp_path / "data", log=lambda *_: None)
    assert recorded_steps(tmp_path / "b" / "last.pt") == 5
    entry = export_weights(tmp_path / "b" / "last.pt", out)
    man = read_manifest(out.parent)["files"]["tiny.safetensors"]
    assert entry["steps"] == man["steps"] == 5 == recorded_steps(out)
    assert man["training"]["run_steps"] == 2 and man["training"]["prior_steps"] == 3
    assert recorded_steps(tmp_path / "missing.safetensors") == 0


def test_init_from_exported_weights(fake_cassi_data, tmp_path):
    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    fake_cassi_data(tmp_path / "data")
    w = tmp_path / "w.safetensors"
    torch.manual_seed(1)
    save_state_dict(build_model("s2former-tiny").state_dict(), w)
    cfg = CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "run"), steps=1,
                           batch_size=1, patch=16, val_every=0, init_weights=str(w), lr=0.0)
    msgs = []
    train(cfg, data_dir=tmp_path / "data", log=msgs.append)
    assert any("initialised from" in m for m in msgs)


def test_training_checkpoint_decodes_directly(fake_cassi_data, tmp_path):
    """A run's last.pt is accepted by the CASSI decoder: preset and overrides from the run,
    the training-only auxiliary head left out."""
    from hsirestore.inference.cassi import CassiDecoder

    fake_cassi_data(tmp_path / "data")
    cfg = CassiTrainConfig(preset="s2former-tiny", out=str(tmp_path / "run"), steps=2,
                           batch_size=2, patch=16, val_every=0, aux_steps=1, warmup=1)
    train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert any(k.startswith("aux.") for k in ck["model"])
    dec = CassiDecoder(weights=tmp_path / "run" / "last.pt", device="cpu")
    assert dec.model_name == "s2former-tiny"
    for k, v in dec.model.state_dict().items():
        torch.testing.assert_close(v, ck["model"][k])


_TINY_GAPTV = dict(stages=2, embed_dim=8, depth=1, num_heads=1, spe_dim_head=8,
                   init="gap-tv", gaptv_iters=3)


def test_gaptv_pool_is_resumable_and_feeds_training(fake_cassi_data, tmp_path):
    from hsirestore.training.cassi import GaptvPatches
    from hsirestore.training.cassi_pool import build_gaptv_pool

    fake_cassi_data(tmp_path / "data")
    pool = tmp_path / "pool"
    made = [build_gaptv_pool(pool, tmp_path / "data", tile=32, iterations=3, shard=s, shards=2,
                             log=lambda *_: None) for s in (0, 1)]
    # 2 scenes x (one 32-pixel sim tile + one real-mask tile), split between the shards
    assert sum(made) == 4 and len(list(pool.glob("*.npz"))) == 4
    assert build_gaptv_pool(pool, tmp_path / "data", tile=32, iterations=3, log=lambda *_: None) == 0
    with np.load(next(pool.glob("*.npz"))) as z:
        assert z["gaptv"].shape == (28, 32, 32) and z["mask"].shape == (32, 32)
    cfg = CassiTrainConfig(preset="s2former-unfolded", batch_size=3, patch=16,
                           gaptv_pool=str(pool), model_overrides=_TINY_GAPTV)
    x, mask, est = GaptvPatches(cfg, tmp_path / "data").batch()
    assert x.shape == est.shape == (3, 28, 16, 16) and mask.shape == (3, 16, 16)
    assert torch.isfinite(est).all()

    cfg.out, cfg.steps, cfg.val_every, cfg.warmup, cfg.aux_steps = str(tmp_path / "run"), 3, 0, 1, 1
    train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 3

    # the decoder runs GAP-TV itself for such a model
    from hsirestore.inference.cassi import CassiDecoder
    from hsirestore.physics.cassi import cassi_forward

    dec = CassiDecoder(weights=tmp_path / "run" / "last.pt", device="cpu")
    assert dec.model.init == "gap-tv"
    m = np.random.default_rng(1).random((24, 24)).astype(np.float32)
    out = dec.decode(cassi_forward(np.random.default_rng(2).random((28, 24, 24)).astype(np.float32), m, 2), m)
    assert out.shape == (28, 24, 24) and np.isfinite(out).all()
    tiled = CassiDecoder(weights=tmp_path / "run" / "last.pt", device="cpu", tile=16, overlap=8)
    out2 = tiled.decode(cassi_forward(np.random.default_rng(2).random((28, 24, 24)).astype(np.float32), m, 2), m)
    assert out2.shape == (28, 24, 24) and np.isfinite(out2).all()


def test_gaptv_model_without_pool_is_refused(fake_cassi_data, tmp_path):
    import pytest

    fake_cassi_data(tmp_path / "data")
    cfg = CassiTrainConfig(preset="s2former-unfolded", out=str(tmp_path / "run"), steps=1,
                           batch_size=1, patch=16, val_every=0, model_overrides=_TINY_GAPTV)
    with pytest.raises(ValueError, match="gaptv-pool"):
        train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)


def test_reset_output_starts_each_stage_as_identity(fake_cassi_data, tmp_path):
    from hsirestore.registry import build_model
    from hsirestore.weights import save_state_dict

    fake_cassi_data(tmp_path / "data")
    torch.manual_seed(0)
    model = build_model("s2former-unfolded", **{**_TINY_GAPTV, "init": "adjoint"})
    for st in model.stages:
        torch.nn.init.normal_(st.conv_last.weight)
    w = tmp_path / "w.safetensors"
    save_state_dict(model.state_dict(), w)
    cfg = CassiTrainConfig(preset="s2former-unfolded", out=str(tmp_path / "run"), steps=1,
                           batch_size=1, patch=16, val_every=0, init_weights=str(w), lr=0.0,
                           reset_output=True, model_overrides={**_TINY_GAPTV, "init": "adjoint"})
    train(cfg, data_dir=tmp_path / "data", log=lambda *_: None)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(float(state[f"stages.{i}.conv_last.weight"].abs().max()) == 0 for i in range(2))
